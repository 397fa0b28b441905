"""The moving average of the weights: its arithmetic, and a run that checks, keeps, resumes and
carries it."""

import csv
import json
from pathlib import Path

import pytest
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.selection import HoldoutSelection
from ros2_ttvos.train import Trainer
from ros2_ttvos.weight_average import WeightAverage


def test_the_average_moves_by_the_half_life_counted_in_steps():
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net)
    with torch.no_grad():
        net.weight.fill_(1.0)
    average.update(net, steps=1, half_life=1.0)  # half way
    assert torch.allclose(average.weights["weight"], torch.full((1, 2), 0.5))
    average.update(net, steps=2, half_life=1.0)  # a step counting 2 moves it 3/4 of the rest
    assert torch.allclose(average.weights["weight"], torch.full((1, 2), 0.875))
    average.update(net, steps=1, half_life=0.0)  # no half-life: the weights themselves
    assert torch.equal(average.weights["weight"], net.weight.detach())
    twin = average.averaged(net)
    assert twin is not net and torch.equal(twin.weight, net.weight)


def test_averaged_weights_of_another_network_are_refused():
    average = WeightAverage(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="do not fit"):
        average.load(WeightAverage(torch.nn.Linear(2, 3, bias=False)).weights)
    with pytest.raises(ValueError, match="averaged weight"):
        average.load(WeightAverage(torch.nn.Linear(3, 1)).weights)


def test_frozen_entries_are_the_networks_bit_for_bit_and_trained_normalisation_is_averaged():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-0.0, 1.0], [2.0, -0.0]]))  # a frozen layer holding -0.0
    net[0].requires_grad_(False)
    average = WeightAverage(net)
    assert "0.weight" in average.frozen and "2.running_mean" in average.weights
    with torch.no_grad():
        net[1].weight.add_(1.0)
        net[2].running_mean.fill_(4.0)
    average.update(net, steps=1, half_life=1.0)
    twin = average.averaged(net)
    assert torch.equal(torch.signbit(twin[0].weight), torch.signbit(net[0].weight))  # -0.0 stays -0.0
    assert torch.allclose(twin[2].running_mean, torch.full((2,), 2.0))
    older = {**average.weights, "0.weight": torch.zeros(2, 2), "0.bias": torch.zeros(2)}
    average.load(older)  # a checkpoint from before averaged the frozen entries too: they are left out
    assert torch.equal(torch.signbit(average.averaged(net)[0].weight), torch.signbit(net[0].weight))


def test_the_averaged_network_keeps_the_frozen_trunk_the_box_head_was_trained_on():
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS))
    average = WeightAverage(model)
    average.update(model, steps=1, half_life=1.0)
    assert average.averaged(model).backbone.frozen_digest() == model.backbone.frozen_digest()


def read_log(run_dir: Path):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def test_a_run_with_averaging_checks_the_average_and_the_trained_weights_and_keeps_the_better(tiny_config):
    first, second = tiny_config["stages"]
    stages = [{**first, "steps": 3}, {**second, "steps": 3, "holdout_compare_raw": False}]  # the second: not
    config = {**tiny_config, "average_half_life": 2, "holdout_every": 3, "holdout_compare_raw": True, "stages": stages}
    trainer = Trainer({**config, "holdout_keep_checked": True})
    trainer.run(max_steps=3)  # one check: best.pt is step 3's average or trained weights, the better
    checked = {path.name: checkpoint.load(path) for path in (trainer.run_dir / "checked").iterdir()}
    assert sorted(checked) == ["3-average.pt", "3-trained.pt"]  # every candidate, kept for shipping
    for name, payload in checked.items():
        assert payload["weights"] == name[2:-3] and payload["step"] == 3
        assert all(v.dtype == torch.float16 for v in payload["model"].values() if v.is_floating_point())
    state = trainer.model.state_dict()
    for name, value in checked["3-trained.pt"]["model"].items():
        assert torch.equal(value, state[name].half() if value.is_floating_point() else state[name]), name
    (row,) = [row for row in read_log(trainer.run_dir) if row["holdout_JF"]]
    average_wins = float(row["selection"]) >= float(row["raw_selection"])
    best = checkpoint.load(trainer.run_dir / "best.pt")
    record = json.loads((trainer.run_dir / "best.json").read_text())
    assert best["step"] == record["step"] == 3
    assert best["weights"] == record["weights"] == ("average" if average_wins else "trained")
    assert record["selection"] == pytest.approx(max(float(row["selection"]), float(row["raw_selection"])))
    trained = trainer.model.state_dict()
    kept = trainer.average.weights if average_wins else {name: trained[name] for name in trainer.average.weights}
    for name, value in kept.items():
        assert torch.equal(best["model"][name], value), name
    assert any(not torch.equal(value, trained[name]) for name, value in trainer.average.weights.items())
    trainer.run(max_steps=3)
    checked = [row for row in read_log(trainer.run_dir) if row["holdout_JF"]]
    assert [int(row["step"]) for row in checked] == [3, 6]
    assert 0.0 <= float(checked[0]["raw_holdout_JF"]) <= 1.0 and 0.0 <= float(checked[0]["raw_selection"]) <= 1.0
    assert checked[1]["raw_holdout_JF"] == "" and checked[1]["raw_selection"] == ""


def test_the_average_resumes_exactly_and_can_be_switched_on_in_mid_run(tiny_config, tmp_path, caplog):
    caplog.set_level("INFO")
    config = {**tiny_config, "average_half_life": 3}
    straight = Trainer({**config, "run_dir": str(tmp_path / "straight")})
    straight.run(max_steps=6)
    first = Trainer({**config, "run_dir": str(tmp_path / "split")})
    first.run(max_steps=4)
    second = Trainer({**config, "run_dir": str(tmp_path / "split")})
    assert second.resume()
    second.run(max_steps=2)
    for name, value in straight.average.weights.items():
        assert torch.allclose(value, second.average.weights[name], atol=1e-6), name

    plain = Trainer({**tiny_config, "run_dir": str(tmp_path / "plain")})
    plain.run(max_steps=2)
    switched = Trainer({**config, "run_dir": str(tmp_path / "plain")})
    assert switched.resume() and "weight averaging starts at step 2" in caplog.text
    state = switched.model.state_dict()
    for name, value in switched.average.weights.items():
        assert torch.equal(value, state[name]), name


def test_best_keeps_the_trained_weights_when_they_beat_their_average(tmp_path):
    """What the check's second candidate does to best.pt and best.json (scores given)."""
    shipped = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS))
    average = WeightAverage(shipped)
    average.weights = {name: value + 1.0 for name, value in average.weights.items()}
    selection = HoldoutSelection({}, tmp_path, torch.device("cpu"), [], [])
    selection.best_protocol = {"internal_size": 480, "search_region": True}
    selection.offer(average.averaged(shipped), {"selection": 0.5}, 100, "average")
    selection.offer(shipped, {"selection": 0.4}, 100, "trained")  # lower: best.pt stays the average
    assert checkpoint.load(tmp_path / "best.pt")["weights"] == "average"
    selection.offer(shipped, {"selection": 0.6}, 100, "trained")
    best = checkpoint.load(tmp_path / "best.pt")
    record = json.loads((tmp_path / "best.json").read_text())
    assert best["weights"] == record["weights"] == "trained" and record["selection"] == 0.6
    assert record["internal_size"] == 480 and selection.best_jf == 0.6
    trained = shipped.state_dict()
    assert all(torch.equal(best["model"][name], trained[name]) for name in average.weights)
