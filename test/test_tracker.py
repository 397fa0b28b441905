"""The streaming Tracker API: outputs, object management, batching, fixed state, bad input."""

import logging

import cv2
import numpy as np
import pytest
import torch
from conftest import two_object_mask

from ros2_ttvos import checkpoint
from ros2_ttvos.demo import sample_clip
from ros2_ttvos.model.layers import heatmap_at_stride
from ros2_ttvos.model.merge import merge_objects, soft_aggregate
from ros2_ttvos.tracker import Tracker


@pytest.fixture()
def tracker(network):
    return Tracker.from_model(network, device="cpu", internal_size=240)


def test_step_outputs_at_input_size(tracker, clip):
    frames, masks = clip
    assert tracker.add_objects(frames[0], masks[0]) == [1]
    for frame in frames[1:4]:
        result = tracker.step(frame)
        assert result.labels.shape == frame.shape[:2] and result.labels.dtype == np.uint8
        assert set(np.unique(result.labels)) <= {0, 1}
        assert list(result.confidences) == [1] and 0.0 <= result.confidences[1] <= 1.0
        assert result.foreground.shape == (1, 240, 432) and result.foreground.dtype == np.float32


def test_any_input_size_gives_labels_at_that_size(network, clip):
    frames, masks = clip
    tracker = Tracker.from_model(network, device="cpu", internal_size=96)
    small = frames[:, ::2, ::3].copy()  # 240 x 285, not a multiple of anything
    tracker.add_objects(small[0], masks[0, ::2, ::3].copy())
    assert tracker.step(small[1]).labels.shape == (240, 285)


def test_add_replace_remove_reset(tracker, clip):
    frames, masks = clip
    two = two_object_mask(masks[0])
    assert tracker.add_objects(frames[0], two) == [1, 2]
    tracker.step(frames[1])
    replacement = np.where(two == 2, 2, 0).astype(np.uint8)
    assert tracker.add_objects(frames[1], replacement) == [2]
    assert sorted(tracker.object_ids) == [1, 2]
    later = np.zeros_like(two)
    later[:40, :40] = 7
    tracker.add_objects(frames[2], later)
    assert sorted(tracker.step(frames[3]).confidences) == [1, 2, 7]
    tracker.remove_objects([2])
    assert sorted(tracker.object_ids) == [1, 7]
    assert set(np.unique(tracker.step(frames[4]).labels)) <= {0, 1, 7}
    tracker.reset()
    assert tracker.object_ids == [] and tracker.state_nbytes() == 0
    empty = tracker.step(frames[5])
    assert not empty.labels.any() and empty.confidences == {}


def test_batched_objects_equal_each_object_alone_until_they_compete(network, clip):
    """Each object is segmented on its own: on the first step (same states) the joint tracker's
    probabilities are the single trackers'; the labels are their merge. Afterwards each object's
    state follows what it kept after the merge, so the joint tracker departs from the singles.
    (The state from the region, whose foregrounds the step returns; from the whole foregrounds:
    test_search_region.py.)"""
    frames, masks = clip
    two = two_object_mask(masks[0])
    together = Tracker.from_model(network, device="cpu", internal_size=240, region_state=True)
    together.add_objects(frames[0], two)
    alone = []
    for object_id in (1, 2):
        single = Tracker.from_model(network, device="cpu", internal_size=240, region_state=True)
        single.add_objects(frames[0], np.where(two == object_id, object_id, 0).astype(np.uint8))
        alone.append(single)
    joint = together.step(frames[1])
    separate = np.concatenate([t.step(frames[1]).foreground for t in alone])
    np.testing.assert_allclose(joint.foreground, separate, atol=1e-4)
    merged = soft_aggregate(torch.from_numpy(separate)).argmax(0).numpy().astype(np.uint8)
    expected = cv2.resize(merged, frames[1].shape[1::-1], interpolation=cv2.INTER_NEAREST)
    assert np.mean(joint.labels == expected) > 0.999
    kept = merge_objects(torch.from_numpy(separate)).unsqueeze(1)
    newest = together.state[0][:, -1]  # each object's newest foreground heatmap
    np.testing.assert_allclose(newest, heatmap_at_stride(kept, 8)[:, 1].numpy(), atol=1e-4)


def test_state_size_is_fixed_over_the_stream(network, clip):
    frames, masks = clip
    tracker = Tracker.from_model(network, device="cpu", internal_size=64)
    tracker.add_objects(frames[0], two_object_mask(masks[0]))
    sizes = {}
    for index in range(1, 501):
        tracker.step(frames[index % len(frames)])
        if index in (10, 500):
            sizes[index] = (tracker.state_nbytes(), [tuple(t.shape) for t in tracker.state])
    assert sizes[10] == sizes[500] and sizes[10][0] > 0


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("state", {"hist", "st", "lt", "area"}), ("template", {"lt", "area"}), ("none", set())],
)
def test_lost_objects_hold_what_the_policy_names(network, clip, policy, kept):
    frames, masks = clip
    tracker = Tracker.from_model(network, "cpu", internal_size=96, confidence_threshold=1.0, hold_when_lost=policy)
    tracker.add_objects(frames[0], masks[0])
    before = tracker.state
    tracker.step(frames[1])  # confidence < 1.0: the object is lost
    for name in ("hist", "st", "lt", "area"):
        same = np.array_equal(getattr(tracker.state, name), getattr(before, name))
        assert same == (name in kept), name
    tracker.confidence_threshold = 0.0  # never lost: everything follows the frame
    before = tracker.state
    tracker.step(frames[2])
    assert not any(np.array_equal(a, b) for a, b in zip(tracker.state[:3], before[:3], strict=True))
    with pytest.raises(ValueError, match="hold_when_lost"):
        Tracker.from_model(network, "cpu", hold_when_lost="forever")


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.zeros((48, 64, 3), np.uint8), np.ones((48, 60), np.uint8), "differs from image size"),
        (np.zeros((48, 64, 3), np.float32), np.ones((48, 64), np.uint8), "uint8"),
        (np.zeros((48, 64, 4), np.uint8), np.ones((48, 64), np.uint8), "HxWx3"),
        (np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8), "no object pixels"),
        (np.zeros((48, 64, 3), np.uint8), np.full((48, 64), 300, np.int32), "1..255"),
        (np.zeros((48, 64, 3), np.uint8), np.ones((48, 64), np.float32), "integer label image"),
    ],
)
def test_bad_input_to_add_objects(network, image, mask, message):
    tracker = Tracker.from_model(network, device="cpu", internal_size=64)
    with pytest.raises(ValueError, match=message):
        tracker.add_objects(image, mask)
    assert tracker.object_ids == []


def test_bad_input_to_step_and_remove(network, clip):
    frames, masks = clip
    tracker = Tracker.from_model(network, device="cpu", internal_size=64)
    tracker.add_objects(frames[0], masks[0])
    with pytest.raises(ValueError, match="frame size"):
        tracker.step(frames[1, :200])
    with pytest.raises(ValueError, match="unknown object ids"):
        tracker.remove_objects([1, 9])
    assert tracker.object_ids == [1]
    with pytest.raises(ValueError, match="uint8"):
        tracker.step(frames[1].astype(np.int16))
    with pytest.raises(ValueError, match="unknown device"):
        Tracker.from_model(network, device="tpu")
    assert tracker.step(frames[1]).labels.shape == frames[1].shape[:2]


def test_checkpoint_round_trip_and_corrupt_file(network, clip, tmp_path, caplog):
    frames, masks = clip
    path = tmp_path / "weights.pt"
    checkpoint.save_atomic(checkpoint.model_payload(network, half=True), path)
    loaded = Tracker.from_pretrained(path, device="cpu", internal_size=96)
    reference = Tracker.from_model(network, device="cpu", internal_size=96)
    for t in (loaded, reference):
        t.add_objects(frames[0], masks[0])
    np.testing.assert_allclose(loaded.step(frames[1]).foreground, reference.step(frames[1]).foreground, atol=2e-2)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        Tracker.from_pretrained(truncated, device="cpu")
    flipped = tmp_path / "flipped.pt"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one byte flipped inside the weights: the archive reads, its CRC fails
    flipped.write_bytes(bytes(damaged))
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt.*CRC"):
        Tracker.from_pretrained(flipped, device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        Tracker.from_pretrained(tmp_path / "missing.pt", device="cpu")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a ros2_ttvos checkpoint"):
        Tracker.from_pretrained(foreign, device="cpu")


def test_auto_device_falls_back_to_cpu_with_a_log_line(network, caplog):
    caplog.set_level(logging.INFO)
    tracker = Tracker.from_model(network, device="auto")
    if torch.cuda.is_available():
        assert tracker.device.startswith("cuda")
    else:
        assert tracker.device == "cpu" and "no CUDA device" in caplog.text


def test_fp16_is_opt_in_and_cuda_only(network):
    assert Tracker.from_model(network, device="cpu").backend.precision == "fp32"
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):
        Tracker.from_model(network, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="needs the torch backend"):
        Tracker.from_pretrained(None, device="cpu", backend="onnxruntime", precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_the_cpu_and_fp16_stays_close():
    """Shipped weights on the bundled clip: CUDA fp32 matches the CPU to the parity bounds of the
    runtimes (>= 99.9 % of label pixels, confidences within 1e-3); fp16 keeps >= 99 % of them."""
    sequence = sample_clip()
    runs = {
        "cpu": Tracker.from_pretrained(None, device="cpu", backend="torch"),
        "cuda": Tracker.from_pretrained(None, device="cuda", backend="torch"),
        "cuda fp16": Tracker.from_pretrained(None, device="cuda", backend="torch", precision="fp16"),
    }
    for tracker in runs.values():
        tracker.add_objects(sequence.image(0), two_object_mask(sequence.mask(0)))
    for index in range(1, len(sequence)):
        results = {name: tracker.step(sequence.image(index)) for name, tracker in runs.items()}
        reference = results["cpu"]
        assert np.mean(results["cuda"].labels == reference.labels) >= 0.999
        assert np.mean(results["cuda fp16"].labels == reference.labels) >= 0.99
        for object_id, confidence in reference.confidences.items():
            assert abs(results["cuda"].confidences[object_id] - confidence) < 1e-3


def test_auto_precision_says_whose_bf16_cost_it_logs(monkeypatch, tmp_path, caplog):
    """On a CPU with bf16 units, precision auto logs bf16's measured J&F cost as the shipped
    weights' only when precision.json was measured on the file shipped now."""
    import hashlib
    import json

    from ros2_ttvos import backends, checkpoint, runtime_choice

    weights = tmp_path / "ttvos_lite0.pt"
    weights.write_bytes(b"these weights")
    costs = {"date": "2026-11-28", "jf": {"DAVIS16 val": {"fp32": 71.43, "bf16": 71.11}}}
    monkeypatch.setattr(backends.OpenVinoBackend, "cpu_has_bf16", staticmethod(lambda: True))
    monkeypatch.setattr(runtime_choice, "PRECISION_COSTS", tmp_path / "precision.json")
    monkeypatch.setattr(checkpoint, "SHIPPED_WEIGHTS", weights)
    caplog.set_level("INFO")
    for sha, said in ((hashlib.sha256(b"these weights").hexdigest()[:16], "measured on the shipped weights"),
                      ("0123456789abcdef", "not measured for the shipped weights; on those before them")):  # fmt: skip
        (tmp_path / "precision.json").write_text(json.dumps({"bf16_vs_fp32": {**costs, "weights_sha256": sha}}))
        caplog.clear()
        assert runtime_choice.auto_precision("openvino", "cpu", None) == "bf16"
        assert f"{said} (2026-11-28): DAVIS16 val J&F 71.43 -> 71.11" in caplog.text
    weights.unlink()  # no shipped weights: no figures claimed for them
    caplog.clear()
    assert runtime_choice.auto_precision("openvino", "cpu", None) == "bf16"
    assert "its J&F cost is not measured for these weights" in caplog.text


def test_auto_backend_choice_per_device(monkeypatch):
    """CPU: openvino. CUDA: onnxruntime when its CUDA provider is installed (faster on the H200
    measured), else torch; fp16 picks torch, the one backend that runs it."""
    from ros2_ttvos import runtime_choice

    assert runtime_choice.fastest_backend("cpu") == "openvino"
    monkeypatch.setattr(runtime_choice, "cuda_available", lambda: True)
    monkeypatch.setattr(runtime_choice, "onnxruntime_has_cuda", lambda: False)
    assert runtime_choice.fastest_backend("auto") == "torch"
    monkeypatch.setattr(runtime_choice, "onnxruntime_has_cuda", lambda: True)
    assert runtime_choice.fastest_backend("cuda:0") == "onnxruntime"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):  # auto picked torch, which refuses the CPU
        Tracker.from_pretrained(None, device="cpu", backend="auto", precision="fp16")
