"""A tiny ablation: every variant starts from the same weights, trains its budget once, is scored."""

import json
from pathlib import Path

import torch
import yaml

from ros2_ttvos import checkpoint
from ros2_ttvos.ablation import main, variant_config
from ros2_ttvos.model import TTVOS


def write_ablation(tmp_path: Path, tiny_config) -> Path:
    base = tmp_path / "train.yaml"
    base.write_text(yaml.safe_dump(tiny_config))
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    checkpoint.save_atomic(checkpoint.model_payload(TTVOS(pretrained_backbone=True)), start)
    config = tmp_path / "ablation.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base": str(base),
                "run_dir": str(tmp_path / "ablation"),
                "init_weights": str(start),
                "warmup_steps": 1,
                "stage": {"name": "ablation", "steps": 2, "frames": 3, "batch": 1, "lr": 1.0e-3, "synthetic": 0.5},
                "variants": {
                    "full": {"description": "nothing"},
                    "no_long_term": {"description": "long-term matching", "model": {"use_long_term": False}},
                    "no_transition_loss": {"description": "transition loss", "loss_weights": {"transition": 0.0}},
                },
            }
        )
    )
    return config


def test_variant_config_merges_the_overrides(tmp_path, tiny_config):
    ablation = yaml.safe_load(write_ablation(tmp_path, tiny_config).read_text())
    config = variant_config(ablation, tiny_config, "no_long_term")
    assert config["model"] == {"use_long_term": False}
    assert config["stages"] == [ablation["stage"]] and config["holdout_every"] == 2
    assert config["run_dir"].endswith("no_long_term") and config["seed"] == tiny_config["seed"]
    assert variant_config(ablation, tiny_config, "no_transition_loss")["loss_weights"]["transition"] == 0.0


def test_tiny_ablation_scores_every_variant_once(tmp_path, tiny_config, capsys):
    config = write_ablation(tmp_path, tiny_config)
    assert main(["--config", str(config), "--threads", "1"]) == 0
    run_dir = tmp_path / "ablation"
    results = json.loads((run_dir / "ablation.json").read_text())
    assert list(results["variants"]) == ["full", "no_long_term", "no_transition_loss"]
    for name, row in results["variants"].items():
        assert 0.0 <= row["fine_tuned"]["JF_mean"] <= 1.0
        assert ("test_time_only" in row) == (name == "no_long_term")
        saved = checkpoint.load(run_dir / name / "last.pt")
        assert saved["step"] == 2 and saved["train_config"]["init_weights"].endswith("start.pt")
    assert checkpoint.load(run_dir / "no_long_term" / "last.pt")["config"]["use_long_term"] is False
    assert "| no_long_term | long-term matching |" in capsys.readouterr().out
    # A second run trains nothing again and gives the same table.
    log = (run_dir / "full" / "log.csv").read_text()
    assert main(["--config", str(config)]) == 0
    assert (run_dir / "full" / "log.csv").read_text() == log
    assert json.loads((run_dir / "ablation.json").read_text())["variants"] == results["variants"]


def test_test_time_only_scores_each_switch_without_training(tmp_path, tiny_config, capsys):
    tiny_config["data"]["multi_holdout"] = {"dir": str(tmp_path / "multi"), "seed": 0, "variants": 1}
    config = write_ablation(tmp_path, tiny_config)
    weights = tmp_path / "start.pt"
    assert main(["--config", str(config), "--test-time-only", str(weights), "--threads", "1"]) == 0
    run_dir = tmp_path / "ablation"
    report = json.loads((run_dir / "test-time-start.json").read_text())
    assert list(report["switches"]) == ["none", "no_long_term"]  # the variants with a model switch
    for row in report["switches"].values():
        assert 0.0 <= row["holdout"]["JF_mean"] <= 1.0 and 0.0 <= row["multi"]["JF_mean"] <= 1.0
    assert not (run_dir / "full").exists() and not (run_dir / "no_long_term").exists()  # nothing trained
    table = (run_dir / "test-time-start.md").read_text()
    assert "| no_long_term | long-term matching |" in table and table in capsys.readouterr().out
    # At another internal size (the product's, say), into files of their own.
    sized_args = ["--config", str(config), "--test-time-only", str(weights), "--threads", "1", "--internal-size", "48"]
    assert main(sized_args) == 0
    sized = json.loads((run_dir / "test-time-start-48.json").read_text())
    assert sized["internal_size"] == 48 and report["internal_size"] == 64
    assert "internal size 48" in (run_dir / "test-time-start-48.md").read_text()
