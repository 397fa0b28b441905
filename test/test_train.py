"""A tiny training run: the loss goes down, checkpoints resume exactly, damage is survived."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ros2_ttvos import checkpoint
from ros2_ttvos.train import Trainer, plot_run

SEQUENCES = ["seq-a", "seq-b", "seq-c", "seq-d"]


@pytest.fixture()
def tiny_config(tmp_path, clip):
    """Four 4-frame sequences in the DAVIS layout and three saliency pairs, made from the sample clip."""
    frames, masks = clip
    root = tmp_path / "DAVIS"
    for offset, name in enumerate(SEQUENCES):
        for index in range(4):
            frame = cv2.resize(frames[offset + index], (214, 120))
            mask = cv2.resize(masks[offset + index], (214, 120), interpolation=cv2.INTER_NEAREST)
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            (root / "Annotations" / "480p" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{index:05d}.jpg")
            Image.fromarray(mask * 255).save(root / "Annotations" / "480p" / name / f"{index:05d}.png")
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(SEQUENCES) + "\n")
    saliency = tmp_path / "saliency"
    saliency.mkdir()
    for index in range(3):
        Image.fromarray(cv2.resize(frames[5 + index], (160, 90))).save(saliency / f"{index}.jpg")
        mask = cv2.resize(masks[5 + index], (160, 90), interpolation=cv2.INTER_NEAREST)
        Image.fromarray(mask * 255).save(saliency / f"{index}.png")
    return {
        "run_dir": str(tmp_path / "run"),
        "seed": 3,
        "threads": 1,
        "device": "cpu",
        "size": [64, 96],
        "checkpoint_minutes": 10,
        "warmup_steps": 1,
        "holdout_every": 1000,
        "holdout_internal_size": 64,
        "data": {
            "davis_root": str(root),
            "davis_train_list": str(listing),
            "resolution": "480p",
            "holdout": SEQUENCES[1:],
            "saliency": [[str(saliency), str(saliency)]],
            "davis_still_fraction": 0.3,
        },
        "model": {},
        "loss_weights": {"segmentation": 1.0, "transition": 1.0, "auxiliary": 1.0},
        "stages": [
            {"name": "pretrain", "steps": 6, "frames": 3, "batch": 2, "lr": 1.0e-3, "synthetic": 1.0},
            {"name": "main", "steps": 6, "frames": 3, "batch": 2, "lr": 1.0e-3, "synthetic": 0.0},
        ],
    }


def read_log(run_dir: Path):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def test_training_reduces_the_loss_and_logs_everything(tiny_config):
    trainer = Trainer(tiny_config)
    trainer.run()
    rows = read_log(Path(tiny_config["run_dir"]))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    losses = [float(r["total"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert rows[-1]["holdout_JF"] != "" and 0.0 <= float(rows[-1]["holdout_JF"]) <= 1.0
    run_dir = Path(tiny_config["run_dir"])
    assert (run_dir / "last.pt").is_file() and (run_dir / "best.pt").is_file()
    assert plot_run(run_dir).stat().st_size > 10_000


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
