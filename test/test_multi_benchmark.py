"""The multi-object benchmark (``ttvos-data multi``) and identity switches, lost and spilled frames
in the report."""

import json
from pathlib import Path

import numpy as np

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.data_cli import main as data_main
from ros2_ttvos.evaluate import main as eval_main


def test_frame_failures_tell_switches_lost_and_spilled_frames_apart():
    truth = np.zeros((7, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1
    truth[:, 6:9, 6:9] = 2
    predicted = truth.copy()
    predicted[2, 2:6, 2:6] = 2  # object 1 labelled as object 2: a switch (and 2 spills onto 1)
    predicted[3, 2:6, 2:5] = 0  # object 1 mostly lost, not switched
    predicted[4, 0:2, :] = 1  # object 1 also labels 20 background pixels, more than its 16: spilled
    predicted[6, 2:6, 2:6] = 2  # the last frame is not evaluated
    counts = metrics.frame_failures(predicted, truth)
    assert counts[1] == metrics.FrameFailures(frames=5, switches=1, lost=1, spilled=1)
    assert counts[2] == metrics.FrameFailures(frames=5, switches=0, lost=0, spilled=1)


def test_frames_back_in_view_after_the_object_was_hidden_are_counted_and_so_are_their_losses():
    truth = np.zeros((9, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1  # 16 pixels on the first frame
    truth[2, 2:6, 2:6] = 0
    truth[2, 2:4, 2:3] = 1  # 2 pixels in view: hidden (under a quarter)
    truth[3, 2:6, 2:4] = 1
    truth[3, 2:6, 4:6] = 0  # 8 in view: half, back
    predicted = truth.copy()
    predicted[4] = 0  # lost on frame 4, back in view at full size
    predicted[1] = 0  # lost before it was ever hidden: lost, not on return
    counts = metrics.frame_failures(predicted, truth)[1]
    assert (counts.frames, counts.lost) == (7, 2)
    assert (counts.returned, counts.lost_on_return) == (5, 1)  # frames 3-7 (8 is not evaluated)
    never_hidden = metrics.frame_failures(predicted[:2].repeat(4, axis=0), truth[:2].repeat(4, axis=0))[1]
    assert (never_hidden.returned, never_hidden.lost_on_return) == (0, 0)


def test_the_benchmark_is_made_from_the_given_sequences_deterministically(tiny_config, tmp_path):
    davis_root = tiny_config["data"]["davis_root"]
    sequences = "seq-b,seq-c"
    for out in ("a", "b"):
        args = ["multi", "--davis", davis_root, "--sequences", sequences, "--variants", "2"]
        assert data_main([*args, "--out", str(tmp_path / out)]) == 0
    described = json.loads((tmp_path / "a" / "benchmark.json").read_text())
    assert [s["source"] for s in described["sequences"]] == ["seq-b", "seq-b", "seq-c", "seq-c"]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    for path in files:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path
    davis = Davis(tmp_path / "a", 2017, "val", "480p")
    for entry, sequence in zip(described["sequences"], davis, strict=True):
        first = sequence.mask(0)
        assert set(range(1, entry["targets"] + 1)) <= set(np.unique(first).tolist())  # every target given
        assert len(sequence) == entry["frames"] == 4
    # ttvos-eval --year 2017 scores it, identity switches included.
    out = tmp_path / "scores"
    eval_args = ["--davis", str(tmp_path / "a"), "--year", "2017", "--backend", "torch", "--device", "cpu"]
    assert eval_main([*eval_args, "--internal-size", "64", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_objects"] == sum(s["targets"] for s in described["sequences"])
    assert 0.0 <= summary["id_switch_rate"] <= 1.0 and isinstance(summary["id_switches"], int)
    assert 0.0 <= summary["lost_rate"] <= 1.0 and 0.0 <= summary["spilled_rate"] <= 1.0
    assert 0 <= summary["lost_on_return"] <= summary["returned_frames"]
    header = (out / "per_sequence.csv").read_text().splitlines()[0]
    assert all(name in header for name in metrics.FAILURE_COLUMNS)
    assert Path(out / "seq-b-multi0" / "00000.png").is_file()


def test_the_crowd_form_keeps_each_sequences_object_alone_among_copies_of_itself(tiny_config, tmp_path):
    davis_root = tiny_config["data"]["davis_root"]
    out = tmp_path / "crowd"
    args = ["multi", "--davis", davis_root, "--sequences", "seq-b", "--variants", "2", "--crowd", "--out", str(out)]
    assert data_main(args) == 0
    described = json.loads((out / "benchmark.json").read_text())
    assert described["crowd"] and [s["targets"] for s in described["sequences"]] == [1, 1]
    source = Davis(Path(davis_root), 2016, resolution="480p", sequences=["seq-b"]).sequence("seq-b")
    composed = list(Davis(out, 2017, "val", "480p"))
    assert [s.name for s in composed] == ["seq-b-crowd0", "seq-b-crowd1"]
    for sequence in composed:
        for index in range(len(source)):
            labels = sequence.mask(index)
            assert set(np.unique(labels).tolist()) <= {0, 1}  # the one target; its copies are background
            assert not (labels.astype(bool) & ~source.mask(index).astype(bool)).any()  # copies only cover it
        changed = [np.abs(sequence.image(i).astype(int) - source.image(i)).mean() > 2 for i in range(len(source))]
        assert any(changed)  # the copies are in the frames
