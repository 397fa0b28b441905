"""Inference backends of the Tracker: the same two graphs (``model.streaming``) run by PyTorch,
ONNX Runtime or OpenVINO. Backends take and return numpy arrays; only the torch backend imports
torch, so a deployment with numpy, OpenCV and a runtime alone runs the tracker and the node.

Every backend offers:
  encode(image, masks) -> state                 image (1, 3, H, W) float32, masks (N, 1, H, W)
  step(image, state, threshold, hold_state, search, region_state)
                                                 -> (slots, confidence, foreground, state)
  prepare(image, state)                          get ready to step inputs of these shapes
  box(crops, prompts) -> probability             the box head (``box_crop``: its crop side; None:
                                                 these weights have none)
with state = (hist, st, lt, updates, area) float32 arrays whose first axis is the object.
"""

import contextlib
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

LOG = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORT_FILES = ("encoder.onnx", "step.onnx", "state.json")

State = Tuple[np.ndarray, ...]
STATE_INPUTS = ("hist", "st", "lt", "updates", "area")  # names of the state tensors in the exported graphs
EXPORT_FORMAT = "ros2_ttvos/onnx/4"  # 2: per-object usual area in the state; 3: the search region input;
# 4: the region_state input


def step_feed(
    image: np.ndarray, state: State, threshold: float, hold_state: bool, search: bool, region_state: bool
) -> dict:
    """Inputs of the exported step graph (``model.streaming.TrackingStep``)."""
    return {
        "image": image,
        "threshold": np.asarray(threshold, np.float32),
        "hold_state": np.asarray(float(hold_state), np.float32),
        "search": np.asarray(float(search), np.float32),
        "region_state": np.asarray(float(region_state), np.float32),
        **dict(zip(STATE_INPUTS, state, strict=True)),
    }


def resolve_torch_device(device: str):
    """'auto' -> CUDA when available (logged), else CPU; otherwise the named device, checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        LOG.info("device=auto: no CUDA device, running on CPU")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda:N)") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use auto, cpu or cuda:N)")
    if resolved.type == "cuda" and (
        not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return torch.device("cuda", resolved.index or 0) if resolved.type == "cuda" else resolved


def no_box_head(backend) -> ValueError:
    return ValueError(
        f"the {backend.name} backend's weights have no box head: use box method network, grabcut or box, "
        "or give it one (ttvos-box-train --export, ttvos-export --box-head)"
    )


class TorchBackend:
    """Eager PyTorch on CPU or CUDA; precision "fp16" (CUDA only) runs the network under autocast
    and keeps the state and the outputs in float32. ``box_prompter``: the box head
    (``checkpoint.box_prompter``), or None."""

    name = "torch"

    PRECISIONS = ("fp32", "fp16")

    def __init__(self, model, device: str = "auto", precision: str = "fp32", box_prompter=None):
        import torch

        from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep

        self._torch = torch
        self._device = device if isinstance(device, torch.device) else resolve_torch_device(device)
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {self.PRECISIONS}, got {precision!r}")
        if precision == "fp16" and self._device.type != "cuda":
            raise ValueError(f"precision fp16 runs on CUDA only; device is {self._device}")
        self.device = str(self._device)
        self.precision = precision
        self.model = model.to(self._device).eval()
        self._encoder = ObjectEncoder(self.model)
        self._step = TrackingStep(self.model)
        self._box = box_prompter.to(self._device).eval() if box_prompter is not None else None
        self.box_crop = box_prompter.head.config.crop if box_prompter is not None else None

    def _tensors(self, *arrays):
        return [self._torch.from_numpy(np.ascontiguousarray(a)).to(self._device) for a in arrays]

    def _run(self, graph, *arrays) -> Tuple[np.ndarray, ...]:
        torch = self._torch
        # On CUDA, cuDNN picks its fastest kernels per input shape (a stream keeps its shape) and
        # fp32 stays IEEE fp32: no TF32, which PyTorch allows for convolutions by default.
        cudnn = (
            torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)
            if self._device.type == "cuda"
            else contextlib.nullcontext()
        )
        fp16 = torch.autocast("cuda", torch.float16, enabled=self.precision == "fp16")
        with torch.inference_mode(), cudnn, fp16:
            outputs = graph(*self._tensors(*arrays))
        return tuple((t.float() if t.is_floating_point() else t).cpu().numpy() for t in outputs)

    def encode(self, image: np.ndarray, masks: np.ndarray) -> State:
        return self._run(self._encoder, image, masks)

    def step(
        self, image: np.ndarray, state: State, threshold: float, hold_state: bool, search: bool, region_state: bool
    ):
        scalars = [np.asarray(threshold, np.float32), np.asarray(float(hold_state), np.float32)]
        if search:  # without these inputs the eager step skips their work; an export computes it always
            scalars.append(np.asarray(1.0, np.float32))
            if not region_state:
                scalars.append(np.asarray(0.0, np.float32))
        slots, confidence, foreground, *new_state = self._run(self._step, image, *state, *scalars)
        return slots, confidence, foreground, tuple(new_state)

    def box(self, crops: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        if self._box is None:
            raise no_box_head(self)
        return self._run(lambda *inputs: (self._box(*inputs),), crops, prompts)[0]

    def prepare(self, image: np.ndarray, state: State) -> None:
        """On CUDA, run the step once on these shapes (outputs dropped), so that cuDNN's kernel
        search for them (0.1-0.5 s measured on an H200) happens now, not on the next frame. On the
        CPU nothing: eager PyTorch runs any shapes as they come."""
        if self._device.type == "cuda":
            self.step(image, state, 0.0, False, False, True)

    def close(self) -> None:
        if self._device.type == "cuda":
            del self.model, self._encoder, self._step, self._box
            self._torch.cuda.empty_cache()


class CudaProviderError(ValueError):
    """onnxruntime's CUDA provider is installed but could not load (CUDA / cuDNN libraries)."""


def check_export_dir(path: Path) -> dict:
    """The export's state.json; ValueError when the folder is not a complete export."""
    missing = [name for name in EXPORT_FILES if not (path / name).is_file()]
    if missing:
        raise ValueError(f"{path} is not a ttvos-export folder (missing {', '.join(missing)})")
    description = json.loads((path / "state.json").read_text())
    if description.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{path} holds an export of format {description.get('format')!r}; this version runs "
            f"{EXPORT_FORMAT!r}: export the checkpoint again with ttvos-export"
        )
    return description


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU (or CUDA when its provider is installed) over a ttvos-export folder."""

    name = "onnxruntime"

    def __init__(self, export_dir: Union[str, Path], device: str = "auto", threads: Optional[int] = None):
        import onnxruntime as ort

        export_dir = Path(export_dir)
        self.description = check_export_dir(export_dir)
        available = ort.get_available_providers()
        if device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in available):
            if "CUDAExecutionProvider" not in available:
                raise ValueError(f"device {device!r}: this onnxruntime has no CUDA provider ({available})")
            index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
            self.device = f"cuda:{index}"
        elif device in ("auto", "cpu"):
            providers, self.device = ["CPUExecutionProvider"], "cpu"
        else:
            raise ValueError(f"unsupported device {device!r} (use auto, cpu or cuda:N)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self._encoder = ort.InferenceSession(str(export_dir / "encoder.onnx"), options, providers=providers)
        self._step = ort.InferenceSession(str(export_dir / "step.onnx"), options, providers=providers)
        has_box = (export_dir / "box.onnx").is_file()
        self._box = (
            ort.InferenceSession(str(export_dir / "box.onnx"), options, providers=providers) if has_box else None
        )
        self.box_crop = (self.description.get("box") or {}).get("crop") if has_box else None
        if self.device.startswith("cuda") and "CUDAExecutionProvider" not in self._step.get_providers():
            # ONNX Runtime falls back to the CPU, with only a log line, when the provider cannot load.
            raise CudaProviderError("onnxruntime's CUDA provider did not load (CUDA / cuDNN libraries missing?)")

    def encode(self, image: np.ndarray, masks: np.ndarray) -> State:
        return tuple(self._encoder.run(None, {"image": image, "masks": masks}))

    def step(
        self, image: np.ndarray, state: State, threshold: float, hold_state: bool, search: bool, region_state: bool
    ):
        feed = step_feed(image, state, threshold, hold_state, search, region_state)
        slots, confidence, foreground, *new_state = self._step.run(None, feed)
        return slots, confidence, foreground, tuple(new_state)

    def box(self, crops: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        if self._box is None:
            raise no_box_head(self)
        return self._box.run(None, {"crops": crops, "prompts": prompts})[0]

    def prepare(self, image: np.ndarray, state: State) -> None:
        """On CUDA, run the step once on these shapes (outputs dropped): cuDNN's kernel search for a
        new shape takes about a second, now rather than on the next frame. On the CPU nothing."""
        if self.device.startswith("cuda"):
            self._step.run(None, step_feed(image, state, 0.0, False, False, True))

    def close(self) -> None:
        self._encoder = self._step = self._box = None


class OpenVinoBackend:
    """OpenVINO on the CPU over a ttvos-export folder (it compiles the same ONNX graphs).

    The step graph is compiled for the exact input shapes (object count, frame size) the first
    time they occur, and the last ``STATIC_MODELS`` such compilations are kept: OpenVINO runs a
    graph of static shapes markedly faster per object than one of dynamic shapes. Each new
    object count costs one compilation (about half a second at 480x854 on 2 cores), made by
    ``prepare`` when objects are added or removed (else by the step that first sees the shapes),
    and each kept compilation holds its buffers (about 140 MB at 480x854).
    """

    name = "openvino"

    PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: its step graph, the rest fp32
    STATIC_MODELS = 2  # the current object count and the previous one

    def __init__(
        self,
        export_dir: Union[str, Path],
        device: str = "auto",
        threads: Optional[int] = None,
        precision: str = "fp32",
    ):
        import openvino as ov

        export_dir = Path(export_dir)
        self.description = check_export_dir(export_dir)
        if device not in ("auto", "cpu"):
            raise ValueError(f"the openvino backend runs on the CPU here; device {device!r} is not supported")
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(self.PRECISIONS)}, got {precision!r}")
        self.device = "cpu"
        self.precision = precision
        self._ov = ov
        self._core = core = ov.Core()
        if precision == "bf16" and not self.cpu_has_bf16(core):
            LOG.warning("precision bf16: this CPU has no bf16 units; OpenVINO emulates bf16 or runs fp32")
        # The precision is always explicit: OpenVINO would otherwise pick bf16 on CPUs that have it.
        self._config = config = {"INFERENCE_PRECISION_HINT": self.PRECISIONS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._encoder = core.compile_model(str(export_dir / "encoder.onnx"), "CPU", config)
        step_file = export_dir / ("step_int8.xml" if precision == "int8" else "step.onnx")
        if not step_file.is_file():
            raise ValueError(
                f"precision int8 needs {step_file}: make it with ttvos-export --weights W --out {export_dir} "
                "--int8 --calibration DAVIS_ROOT, then run with weights set to that folder"
            )
        self._step_graph = core.read_model(str(step_file))
        self._steps: OrderedDict[tuple, object] = OrderedDict()  # input shapes -> compiled step
        self._box_file = export_dir / "box.onnx"
        self._box = None  # compiled when a box first comes
        self.box_crop = (self.description.get("box") or {}).get("crop") if self._box_file.is_file() else None

    @staticmethod
    def cpu_has_bf16(core=None) -> bool:
        """Whether OpenVINO finds bf16 units on this CPU."""
        if core is None:
            import openvino as ov

            core = ov.Core()
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")

    def encode(self, image: np.ndarray, masks: np.ndarray) -> State:
        result = self._encoder({"image": image, "masks": masks})
        return tuple(np.array(result[output]) for output in self._encoder.outputs)

    def _compiled_step(self, feed: dict):
        """The step graph compiled for the shapes of ``feed`` (compiled on first use, kept LRU)."""
        shapes = tuple((name, np.shape(value)) for name, value in feed.items())
        if shapes in self._steps:
            self._steps.move_to_end(shapes)
            return self._steps[shapes]
        start = time.perf_counter()
        graph = self._step_graph.clone()
        graph.reshape({name: self._ov.PartialShape(list(shape)) for name, shape in shapes})
        compiled = self._core.compile_model(graph, "CPU", self._config)
        LOG.info(
            "openvino: step compiled for %d objects at %s in %.2f s",
            feed["hist"].shape[0], "x".join(map(str, feed["image"].shape[2:])), time.perf_counter() - start,
        )  # fmt: skip
        self._steps[shapes] = compiled
        if len(self._steps) > self.STATIC_MODELS:
            self._steps.popitem(last=False)
        return compiled

    def step(
        self, image: np.ndarray, state: State, threshold: float, hold_state: bool, search: bool, region_state: bool
    ):
        feed = step_feed(image, state, threshold, hold_state, search, region_state)
        compiled = self._compiled_step(feed)
        result = compiled(feed)
        slots, confidence, foreground, *new_state = (np.array(result[output]) for output in compiled.outputs)
        return slots, confidence, foreground, tuple(new_state)

    def box(self, crops: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        if self.box_crop is None:
            raise no_box_head(self)
        if self._box is None:
            self._box = self._core.compile_model(str(self._box_file), "CPU", self._config)
        return np.array(self._box({"crops": crops, "prompts": prompts})[self._box.outputs[0]])

    def prepare(self, image: np.ndarray, state: State) -> None:
        """Compile the step for these shapes now (when objects are added), not on the next frame."""
        self._compiled_step(step_feed(image, state, 0.0, False, False, True))

    def close(self) -> None:
        self._encoder = self._step_graph = self._box = None
        self._steps.clear()
