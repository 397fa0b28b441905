"""The node's parameters, declared in one place: name, default, description, range, choices,
and whether a change applies at run time or on the next configure (``NodeConfig``)."""

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ros2_ttvos.prompts import METHOD_CHOICES
from ros2_ttvos.tracker import HOLD_POLICIES


def _descriptor(description: str, *, runtime: bool = False, integer=None, floating=None) -> ParameterDescriptor:
    """Descriptor with an optional [lo, hi] integer or floating-point range."""
    descriptor = ParameterDescriptor(description=description)
    descriptor.additional_constraints = (
        "changeable at run time" if runtime else "applied on configure (cleanup, set it, configure again)"
    )
    if integer is not None:
        descriptor.integer_range = [IntegerRange(from_value=integer[0], to_value=integer[1], step=1)]
    if floating is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=floating[0], to_value=floating[1], step=0.0)]
    return descriptor


# name -> (default, descriptor). Every parameter of the node is declared here, in one place.
PARAMETERS = {
    "device": ("auto", _descriptor("auto (CUDA when present, else CPU), cpu or cuda:N")),
    "weights": ("", _descriptor("checkpoint (torch) or ttvos-export folder (onnxruntime); empty = shipped")),
    "backend": ("auto", _descriptor("auto (fastest installed for the device), torch, onnxruntime or openvino")),
    "precision": (
        "auto",
        _descriptor("auto (bf16 with openvino on CPUs with bf16 units, else fp32), fp32, bf16 or fp16 (torch, CUDA)"),
    ),
    "internal_size": (480, _descriptor("short side (px) at which frames are processed", integer=(32, 2160))),
    "threads": (0, _descriptor("CPU threads of the backend; 0 = its default (all cores)", integer=(0, 256))),
    "max_objects": (16, _descriptor("highest object id accepted by set_targets", integer=(1, 255))),
    "confidence_threshold": (
        0.5,
        _descriptor(
            "objects below it are reported not visible and hold what hold_when_lost names",
            runtime=True,
            floating=(0.0, 1.0),
        ),
    ),
    "hold_when_lost": (
        "template",
        _descriptor("what a lost object keeps: template (long-term), state (all of it) or none", runtime=True),
    ),  # fmt: skip
    "search_region": (
        True,
        _descriptor(
            "true: each object is looked for near its last mask (15 % of internal_size around the mask's "
            "main piece); false: everywhere in the frame",
            runtime=True,
        ),
    ),
    "region_state": (
        False,
        _descriptor(
            "with search_region: false: each object's state follows all of its foreground, as in training; true: "
            "only its foreground inside the region (chosen per weights file on the hold-out)",
            runtime=True,
        ),
    ),
    "box_method": (
        "auto",
        _descriptor(
            "how set_targets makes boxes and clicks masks: head (trained box head), network (the tracker's "
            "own), grabcut or box; auto: head where the weights have one, else network",
            runtime=True,
        ),
    ),
    "publish_overlay": (True, _descriptor("compute debug/overlay while it has subscribers", runtime=True)),
    "process_every_frame": (False, _descriptor("true: every frame in order (replay); false: latest frame only")),
    "queue_size": (30, _descriptor("frames queued in process_every_frame mode", integer=(1, 1000))),
    "frame_buffer": (30, _descriptor("recent frames kept for set_targets by stamp", integer=(1, 300))),
    "image_transport": ("raw", _descriptor("raw (sensor_msgs/Image) or compressed (image/compressed)")),
    "autostart": (True, _descriptor("configure and activate on start-up")),
}
RUNTIME_PARAMETERS = {
    "confidence_threshold",
    "hold_when_lost",
    "search_region",
    "region_state",
    "box_method",
    "publish_overlay",
}
CHOICES = {
    "hold_when_lost": HOLD_POLICIES,
    "image_transport": ("raw", "compressed"),
    "backend": ("torch", "onnxruntime", "openvino", "auto"),
    "precision": ("auto", "fp32", "bf16", "int8", "fp16"),
    "box_method": METHOD_CHOICES,
}


@dataclass(frozen=True)
class NodeConfig:
    """The node's parameters as read on configure."""

    device: str
    weights: str
    backend: str
    precision: str
    internal_size: int
    threads: int
    max_objects: int
    confidence_threshold: float
    hold_when_lost: str
    search_region: bool
    region_state: bool
    box_method: str
    publish_overlay: bool
    process_every_frame: bool
    queue_size: int
    frame_buffer: int
    image_transport: str
    autostart: bool
