"""The occlusion study: occluder, lost-event bookkeeping, and a run on a tiny DAVIS-layout folder."""

import json

import numpy as np
import yaml

from ros2_ttvos.occlusion import OCCLUDER_GREY, lost_events, main, occlude


def test_occlude_covers_the_grown_bounding_box_only():
    image = np.full((40, 60, 3), 7, np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 20:40] = 1
    out = occlude(image, mask, margin=0.1)
    assert (out[9:21, 18:42] == OCCLUDER_GREY).all()
    assert (out[:8] == 7).all() and (out[:, :17] == 7).all() and (out[23:] == 7).all()
    assert (image == 7).all()  # the input is not modified
    assert occlude(image, np.zeros_like(mask)) is image


def test_lost_events_say_when_the_object_is_picked_up_again():
    confidence = np.array([1.0, 0.9, 0.2, 0.1, 0.8, 0.9, 0.3, 0.2])
    jaccard = np.array([1.0, 0.9, 0.0, 0.0, 0.3, 0.7, 0.0, 0.0])
    events = lost_events(confidence, jaccard, threshold=0.5)
    assert events == [
        {"start": 2, "frames": 2, "picked_up_at": 5},  # frame 4 is confident but wrong (J 0.3)
        {"start": 6, "frames": 2, "picked_up_at": -1},
    ]


def test_study_runs_on_hold_out_sequences(tmp_path, tiny_config):
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump(tiny_config))
    out = tmp_path / "occlusion"
    args = ["--train-config", str(train), "--backend", "torch", "--internal-size", "64", "--length", "1"]
    assert main([*args, "--window", "2", "--out", str(out)]) == 0
    report = json.loads((out / "occlusion.json").read_text())
    assert set(report["summary"]) == {"state", "template", "none"}
    for stats in report["summary"].values():
        assert stats["trials"] == 3 * len(tiny_config["data"]["holdout"])
        assert 0 <= stats["recovered"] <= stats["trials"]
        assert 0.0 <= stats["J_during"] <= 1.0
    assert (out / "confidence.png").stat().st_size > 10_000
    assert "| state |" in (out / "occlusion.md").read_text()


def test_study_refuses_sequences_outside_the_train_list(tmp_path, tiny_config):
    tiny_config["data"]["holdout"] = ["blackswan"]
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump(tiny_config))
    assert main(["--train-config", str(train), "--out", str(tmp_path / "out")]) == 1
