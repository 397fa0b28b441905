"""ttvos-export round trip and ONNX Runtime / OpenVINO / PyTorch parity on a 50-frame DAVIS clip."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SEQUENCES

from ros2_ttvos import checkpoint
from ros2_ttvos import export as export_module
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.export import export, validate
from ros2_ttvos.tracker import Tracker

SHARED_DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "DAVIS"


def test_export_cli_writes_and_validates(network, tmp_path):
    weights = tmp_path / "weights.pt"
    checkpoint.save_atomic(checkpoint.model_payload(network), weights)
    out = tmp_path / "export"
    result = subprocess.run(
        [sys.executable, "-m", "ros2_ttvos.export", "--weights", str(weights), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "checked with ONNX Runtime" in result.stdout
    assert {p.name for p in out.iterdir()} >= {"encoder.onnx", "step.onnx", "state.json"}
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(weights.read_bytes()[:2000])
    result = subprocess.run(
        [sys.executable, "-m", "ros2_ttvos.export", "--weights", str(damaged), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "truncated or corrupt" in result.stderr


def test_validation_at_other_sizes_and_object_counts(network, export_dir):
    gaps = validate(network, export_dir)
    assert gaps["foreground"] < 1e-3 and gaps["confidence"] < 1e-3 and gaps["slots_equal"] >= 0.999


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtime_backends_import_no_torch(export_dir, backend):
    code = (
        "import sys, numpy as np\n"
        "from ros2_ttvos.tracker import Tracker\n"
        f"t = Tracker.from_pretrained({str(export_dir)!r}, device='cpu', backend={backend!r}, internal_size=96)\n"
        "image = np.zeros((120, 200, 3), np.uint8); mask = np.zeros((120, 200), np.uint8); mask[30:90, 40:120] = 3\n"
        "t.add_objects(image, mask); r = t.step(image)\n"
        "assert r.labels.shape == (120, 200) and list(r.confidences) == [3]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_agree_on_a_50_frame_davis_clip(network, export_dir, backend):
    sequence = Davis(SHARED_DAVIS, 2016, "val").sequence("blackswan")
    assert len(sequence) == 50
    trackers = [
        Tracker.from_model(network, device="cpu", internal_size=240),
        Tracker.from_pretrained(export_dir, device="cpu", backend=backend, precision="fp32", internal_size=240),
    ]
    for tracker in trackers:
        tracker.add_objects(sequence.image(0), sequence.mask(0))
    equal = total = 0
    for index in range(1, len(sequence)):
        image = sequence.image(index)
        by_torch, by_onnx = (tracker.step(image) for tracker in trackers)
        equal += int((by_torch.labels == by_onnx.labels).sum())
        total += by_torch.labels.size
        assert abs(by_torch.confidences[1] - by_onnx.confidences[1]) < 1e-3
    assert equal / total >= 0.999


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped weights and their export: objects of a trained network rarely tie."""
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    out = tmp_path_factory.mktemp("shipped-onnx")
    export(model, out)
    return model, out


@pytest.mark.parametrize("region_state", [True, False])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_agree_with_several_objects(shipped, backend, region_state):
    """The swan's mask split at its middle column into objects 1 and 2, and a third object; the
    state made from the foregrounds in the search region or from all of them."""
    network, export_dir = shipped
    sequence = Davis(SHARED_DAVIS, 2016, "val").sequence("blackswan")
    labels = sequence.mask(0).astype(np.uint8)
    middle = int(np.median(np.nonzero(labels)[1]))
    labels[:, middle:] *= 2
    labels[20:80, 30:120] = 3
    trackers = [
        Tracker.from_model(network, device="cpu", internal_size=240, region_state=region_state),
        Tracker.from_pretrained(
            export_dir, device="cpu", backend=backend, precision="fp32", internal_size=240, region_state=region_state
        ),
    ]
    for tracker in trackers:
        tracker.add_objects(sequence.image(0), labels)
    for index in range(1, 15):
        by_torch, by_runtime = (tracker.step(sequence.image(index)) for tracker in trackers)
        assert np.mean(by_torch.labels == by_runtime.labels) >= 0.999
        assert set(by_runtime.confidences) == {1, 2, 3}
        for object_id, confidence in by_torch.confidences.items():
            assert abs(confidence - by_runtime.confidences[object_id]) < 1e-3


def test_openvino_follows_objects_added_and_removed_mid_stream(shipped):
    """The OpenVINO step is compiled per object count: counts change as objects come and go."""
    network, export_dir = shipped
    sequence = Davis(SHARED_DAVIS, 2016, "val").sequence("blackswan")
    swan = sequence.mask(0).astype(np.uint8)
    box = np.zeros_like(swan)
    box[20:80, 30:120] = 1
    trackers = [
        Tracker.from_model(network, device="cpu", internal_size=240),
        Tracker.from_pretrained(export_dir, device="cpu", backend="openvino", precision="fp32", internal_size=240),
    ]
    boxes = 2 * box + 3 * np.roll(box, 200, axis=1)
    for index in range(7):  # no object, then 1 (swan), 3 (and two boxes), 2 (box 2 dropped)
        for tracker in trackers:
            if index == 1:
                tracker.add_objects(sequence.image(index), swan)
            elif index == 3:
                tracker.add_objects(sequence.image(index), boxes)
            elif index == 5:
                tracker.remove_objects([2])
        if trackers[1].object_ids:  # compiled when the objects changed, before this frame
            compiled_counts = [dict(shapes)["hist"][0] for shapes in trackers[1].backend._steps]
            assert len(trackers[1].object_ids) in compiled_counts
        by_torch, by_openvino = (tracker.step(sequence.image(index + 1)) for tracker in trackers)
        assert np.mean(by_torch.labels == by_openvino.labels) >= 0.999
        assert by_torch.confidences.keys() == by_openvino.confidences.keys()
        for object_id, confidence in by_torch.confidences.items():
            assert abs(confidence - by_openvino.confidences[object_id]) < 1e-3
    assert sorted(trackers[1].object_ids) == [1, 3]


def capture_auto(make, caplog) -> str:
    caplog.clear()
    make()
    return caplog.text


def test_precision_auto_is_bf16_only_with_openvino_on_a_cpu_with_bf16_units(export_dir, caplog):
    from ros2_ttvos.backends import OpenVinoBackend

    caplog.set_level("INFO")
    native = OpenVinoBackend.cpu_has_bf16()
    by_default = Tracker.from_pretrained(export_dir, device="cpu", backend="openvino")
    assert by_default.backend.precision == ("bf16" if native else "fp32")
    assert f"precision auto: {'bf16' if native else 'fp32'}" in caplog.text
    assert (
        Tracker.from_pretrained(export_dir, device="cpu", backend="openvino", precision="fp32").backend.precision
        == "fp32"
    )
    assert (
        Tracker.from_pretrained(export_dir, device="cpu", backend="onnxruntime").backend.name == "onnxruntime"
    )  # fp32
    with pytest.raises(ValueError, match="needs the openvino backend"):
        Tracker.from_pretrained(export_dir, device="cpu", backend="onnxruntime", precision="bf16")


def test_auto_backend_exports_a_checkpoint_once_into_the_cache(network, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "weights.pt"
    checkpoint.save_atomic(checkpoint.model_payload(network), weights)
    tracker = Tracker.from_pretrained(weights, device="cpu", backend="auto", internal_size=96)
    assert tracker.backend.name == "openvino"
    exports = list((tmp_path / "cache" / "ros2_ttvos" / "exports").iterdir())
    assert len(exports) == 1 and (exports[0] / "step.onnx").is_file()
    Tracker.from_pretrained(weights, device="cpu", backend="onnxruntime")
    assert list((tmp_path / "cache" / "ros2_ttvos" / "exports").iterdir()) == exports  # reused
    # Other network code (a new package version) must not run graphs traced from the old code.
    monkeypatch.setattr(export_module, "graph_code_digest", lambda: "other-code")
    Tracker.from_pretrained(weights, device="cpu", backend="onnxruntime")
    assert len(list((tmp_path / "cache" / "ros2_ttvos" / "exports").iterdir())) == 2


def test_int8_step_graph_calibrated_on_training_frames_tracks_like_fp32(shipped, tiny_config, clip):
    from ros2_ttvos.quantize import write_int8_step

    _, export_dir = shipped
    with pytest.raises(ValueError, match="precision int8 needs"):
        Tracker.from_pretrained(export_dir, device="cpu", backend="openvino", precision="int8")
    with pytest.raises(ValueError, match="hold-out sequences"):
        write_int8_step(export_dir, tiny_config["data"]["davis_root"], ["seq-a", "hockey"])
    write_int8_step(export_dir, tiny_config["data"]["davis_root"], SEQUENCES, every=1, internal_size=240)
    frames, masks = clip
    trackers = [
        Tracker.from_pretrained(export_dir, device="cpu", backend="openvino", precision=p, internal_size=240)
        for p in ("fp32", "int8")
    ]
    assert trackers[1].backend.precision == "int8"
    for tracker in trackers:
        tracker.add_objects(frames[0], masks[0])
    for frame in frames[1:]:
        by_fp32, by_int8 = (tracker.step(frame) for tracker in trackers)
        assert np.mean(by_fp32.labels == by_int8.labels) > 0.97
        assert abs(by_fp32.confidences[1] - by_int8.confidences[1]) < 0.1
