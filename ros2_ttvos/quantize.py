"""int8 step graph for OpenVINO: post-training quantization with NNCF, calibrated on training
frames only (``ttvos-export --int8 --calibration DAVIS_ROOT``).

The calibration inputs are what the step graph really sees: the fp32 tracker runs over DAVIS16
train sequences (never the hold-out ones, never val) and every input it feeds the step is kept.
The result, ``step_int8.xml`` beside ``step.onnx`` in the export folder, is what
``precision: int8`` runs (the encoder, run only when objects are added, stays fp32).
"""

from pathlib import Path
from typing import List, Sequence

from ros2_ttvos.backends import step_feed
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.tracker import Tracker

INT8_STEP = "step_int8.xml"
HOLDOUT = ("bmx-bumps", "hockey", "swing")  # config/train.yaml's: never used to calibrate


def calibration_feeds(
    export_dir: Path, davis_root: Path, sequences: Sequence[str], every: int, internal_size: int
) -> List[dict]:
    """Step inputs of the fp32 tracker on every ``every``-th frame of ``sequences``."""
    tracker = Tracker.from_pretrained(export_dir, "cpu", "openvino", precision="fp32", internal_size=internal_size)
    feeds: List[dict] = []
    step = tracker.backend.step

    def recording(*inputs):
        feeds.append(step_feed(*inputs))
        return step(*inputs)

    tracker.backend.step = recording
    for sequence in Davis(davis_root, 2016, sequences=list(sequences)):
        tracker.reset()
        tracker.add_objects(sequence.image(0), sequence.mask(0))
        for index in range(1, len(sequence), every):
            tracker.step(sequence.image(index))
    return feeds


def write_int8_step(
    export_dir: Path, davis_root: Path, sequences: Sequence[str], every: int = 4, internal_size: int = 480
) -> Path:
    """Quantize ``export_dir/step.onnx`` into ``export_dir/step_int8.xml``; returns its path."""
    import nncf
    import openvino as ov

    leaked = sorted(set(sequences) & set(HOLDOUT))
    if leaked:
        raise ValueError(f"calibration sequences {leaked} are hold-out sequences: choose training ones")
    feeds = calibration_feeds(export_dir, davis_root, sequences, every, internal_size)
    if not feeds:
        raise ValueError("no calibration frames: the sequences are too short for --every")
    model = ov.Core().read_model(str(Path(export_dir) / "step.onnx"))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds))
    out = Path(export_dir) / INT8_STEP
    ov.save_model(quantized, str(out))
    return out
