"""What ``Tracker.from_pretrained`` runs on this machine when asked for ``backend="auto"`` or
``precision="auto"``, and the export folder a runtime backend loads."""

import logging
from pathlib import Path
from typing import Optional, Union

from ros2_ttvos import backends

LOG = logging.getLogger(__name__)

PRECISION_BACKENDS = {"bf16": "openvino", "int8": "openvino", "fp16": "torch"}  # the one backend of each


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


PRECISION_COSTS = Path(__file__).resolve().parent / "weights" / "precision.json"


def auto_precision(backend: str, device: str, weights) -> str:
    """What ``precision="auto"`` means here: bf16 with OpenVINO on a CPU that computes bf16
    natively (1.5-1.6x fp32's speed measured on an AMD EPYC with avx512_bf16), fp32 elsewhere (on
    CUDA fp16 measured slower than fp32: docs/evaluation.md). int8 is never picked: not faster than
    bf16 where measured. Logged with bf16's measured J&F cost on the shipped weights."""
    on_gpu = device.startswith("cuda") or (device == "auto" and importable("torch") and cuda_available())
    native = not on_gpu and backend in ("auto", "openvino") and importable("openvino")
    if not (native and backends.OpenVinoBackend.cpu_has_bf16()):
        LOG.info("precision auto: fp32 (%s)", "CUDA" if on_gpu else f"backend {backend}, or no bf16 units on this CPU")
        return "fp32"
    cost = (weights is None and shipped_bf16_cost()) or "its J&F cost is not measured for these weights"
    LOG.info("precision auto: bf16 with OpenVINO (this CPU computes bf16 natively); %s", cost)
    return "bf16"


def shipped_bf16_cost() -> Optional[str]:
    """bf16's J&F cost from ``weights/precision.json``, said to be the shipped weights' only if it
    was measured on the file shipped now; None without the file or shipped weights."""
    from ros2_ttvos.checkpoint import SHIPPED_WEIGHTS  # torch: the shipped weights are exported next anyway

    if not (PRECISION_COSTS.is_file() and SHIPPED_WEIGHTS.is_file()):
        return None
    import hashlib
    import json

    measured = json.loads(PRECISION_COSTS.read_text())["bf16_vs_fp32"]
    figures = ", ".join(f"{name} J&F {m['fp32']:.2f} -> {m['bf16']:.2f}" for name, m in measured["jf"].items())
    if hashlib.sha256(SHIPPED_WEIGHTS.read_bytes()).hexdigest().startswith(measured["weights_sha256"]):
        return f"measured on the shipped weights ({measured['date']}): {figures}"
    return f"not measured for the shipped weights; on those before them ({measured['date']}): {figures}"


def fastest_backend(device: str) -> str:
    """The CPU: openvino, else onnxruntime, else torch. CUDA: onnxruntime when its CUDA provider is
    installed (1.8x torch's speed at 480x854, measured on an H200: docs/evaluation.md), else torch."""
    if device.startswith("cuda") or (device == "auto" and importable("torch") and cuda_available()):
        return "onnxruntime" if onnxruntime_has_cuda() else "torch"
    return next((name for name in ("openvino", "onnxruntime") if importable(name)), "torch")


def onnxruntime_has_cuda() -> bool:
    if not importable("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def export_dir_of(weights: Optional[Union[str, Path]]) -> Path:
    """The export folder to run: ``weights`` itself if it is one, else a cached export of the checkpoint."""
    if weights is not None and Path(weights).is_dir():
        return Path(weights)
    from ros2_ttvos import checkpoint
    from ros2_ttvos.export import cached_export

    path = checkpoint.SHIPPED_WEIGHTS if weights is None else Path(weights)
    if not path.is_file():
        raise checkpoint.CheckpointError(f"checkpoint not found: {path}")
    return cached_export(path)
