"""Streaming multi-object tracker: the one inference API of ros2_ttvos (no ROS, no torch needed).

Use one Tracker per video stream::

    tracker = Tracker.from_pretrained()          # shipped weights, CUDA if present
    tracker.add_objects(first_rgb, label_mask)   # HxWx3 uint8, HxW labels (0 = background)
    for rgb in frames:
        result = tracker.step(rgb)               # result.labels, result.confidences

Object ids (1..255) are stable and independent of the rows (slots) that hold their state.
Every object's state has a fixed size, so memory does not grow with the stream's length.
The network runs in a backend (``ros2_ttvos.backends``): PyTorch or ONNX Runtime.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ros2_ttvos import backends, runtime_choice
from ros2_ttvos.main_component import keep_main_component

LOG = logging.getLogger(__name__)

MAX_OBJECT_ID = 255
HOLD_POLICIES = ("template", "state", "none")  # what a lost object keeps; see Tracker
SIZE_MULTIPLE = 16  # the network needs frame sides that are multiples of 16


class ObjectState(NamedTuple):
    """Per-object state, rows in slot order (see ``model.ttvos.TemplateState``)."""

    hist: np.ndarray
    st: np.ndarray
    lt: np.ndarray
    updates: np.ndarray
    area: np.ndarray  # (N,) the object's usual share of the frame (see ``TrackingStep``)


@dataclass
class TrackResult:
    """Output of one tracked frame.

    labels: (H, W) uint8 label image at the input size, 0 = background, k = object k.
    confidences: {object_id: float in [0, 1]}, the mean foreground probability of the object over
        the pixels labelled as it, times its presence: its share of the frame over its usual share,
        at most 1. An object that is hidden, or shrinks to a fraction of its size, scores low; 0.0
        when it has no pixels.
    foreground: (N, h, w) float32 per-object foreground probabilities at the internal processing
        size, rows in the order of ``object_ids``, before the objects are merged.
    object_ids: ids of the rows of ``foreground``.
    """

    labels: np.ndarray
    confidences: Dict[int, float] = field(default_factory=dict)
    foreground: Optional[np.ndarray] = None
    object_ids: List[int] = field(default_factory=list)


def internal_shape(height: int, width: int, internal_size: Optional[int]) -> Tuple[int, int]:
    """Processing size: short side ~``internal_size`` (None: the input's), both sides multiples of 16."""
    scale = 1.0 if internal_size is None else internal_size / min(height, width)

    def snap(value: float) -> int:
        return max(SIZE_MULTIPLE, int(round(value / SIZE_MULTIPLE)) * SIZE_MULTIPLE)

    return snap(height * scale), snap(width * scale)


class Tracker:
    """Tracks any number of objects through one stream with a shared TTVOS network.

    backend: a backend of ``ros2_ttvos.backends`` (see ``from_pretrained`` and ``from_model``).
    internal_size: short side (pixels) at which frames are processed, rounded so that both sides
        are multiples of 16; None = the input size. Output labels are always at the input size.
    confidence_threshold: below it an object is lost (hidden, or gone), and what ``hold_when_lost``
        names is not updated with the frame's prediction, so that an occluder is not learned as it.
    hold_when_lost: "template" (the default): a lost object keeps its long-term template and
        usual area; "state": its whole state, so it is looked for where and as it was last seen
        (picks objects up again more often after an occluder passes, but loses objects that move
        while hidden: see docs/occlusion.md); "none": everything follows every frame.
    search_region: True (the default): each object's foreground is weighted by its last mask
        dilated by 15 % of the internal short side (``model.search_region``), so that
        look-alikes elsewhere in view cannot take it over, and it follows only the main piece of
        a mask that has split (``main_component``); False: looked for everywhere. Chosen on the
        hold-out sequences (docs/accuracy.md).
    region_state: with the search region, False (the default): each object's next state comes
        from its whole foreground, the region choosing only the labels and the confidence, the
        way the network is trained; True: from its foreground inside the region. The form is
        chosen per weights file on the hold-out (docs/occlusion.md); the shipped weights score
        higher with False.
    """

    def __init__(
        self,
        backend,
        internal_size: Optional[int] = 480,
        confidence_threshold: float = 0.5,
        hold_when_lost: str = "template",
        search_region: bool = True,
        region_state: bool = False,
    ):
        if internal_size is not None and internal_size < SIZE_MULTIPLE:
            raise ValueError(f"internal_size must be at least {SIZE_MULTIPLE} or None, got {internal_size}")
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        if hold_when_lost not in HOLD_POLICIES:
            raise ValueError(f"hold_when_lost must be one of {HOLD_POLICIES}, got {hold_when_lost!r}")
        self.backend = backend
        self.hold_when_lost = hold_when_lost
        self.internal_size = internal_size
        self.confidence_threshold = confidence_threshold
        self.search_region = bool(search_region)
        self.region_state = bool(region_state)
        self.reset()

    @property
    def device(self) -> str:
        return self.backend.device

    @classmethod
    def from_model(cls, model, device: str = "auto", precision: str = "fp32", box_prompter=None, **kwargs) -> "Tracker":
        """A tracker running a TTVOS module with the torch backend (precision fp16: CUDA only);
        ``box_prompter``: its box head (``checkpoint.box_prompter``), if any."""
        return cls(backends.TorchBackend(model, device, precision, box_prompter), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        weights: Optional[Union[str, Path]] = None,
        device: str = "auto",
        backend: str = "torch",
        threads: Optional[int] = None,
        precision: str = "auto",
        **kwargs,
    ) -> "Tracker":
        """Build a tracker; ``weights`` None = the weights shipped with the package.

        backend "torch": ``weights`` is a checkpoint file. Without shipped weights the network gets
        its ImageNet backbone and an untrained head, with a warning. A missing or damaged file
        raises ``checkpoint.CheckpointError``.
        backend "onnxruntime" or "openvino": ``weights`` is a folder written by ``ttvos-export``, or
        a checkpoint (None: the shipped one) that is exported once into the user cache (needs torch).
        backend "auto": the fastest installed for the device: openvino, else onnxruntime on a CPU;
        on CUDA onnxruntime when its CUDA provider is installed (and loads), else torch; torch
        for fp16, openvino for bf16.
        threads: CPU threads of the backend (None: its default).
        precision: "fp32", "bf16" with the openvino backend (faster on CPUs with bf16 units), or
        "fp16" with the torch backend on CUDA; "auto" (default): bf16 where the backend is openvino
        (or auto) on a CPU with bf16 units, fp32 elsewhere, logged with the accuracy cost measured
        for the shipped weights (``weights/precision.json``).
        """
        if precision == "auto":
            precision = runtime_choice.auto_precision(backend, device, weights)
        auto = backend == "auto"
        if auto:
            backend = runtime_choice.PRECISION_BACKENDS.get(precision) or runtime_choice.fastest_backend(device)
        needs = runtime_choice.PRECISION_BACKENDS.get(precision, backend)
        if backend != needs:
            raise ValueError(f"precision {precision!r} needs the {needs} backend; {backend} runs fp32")
        if backend in ("onnxruntime", "openvino"):
            export_dir = runtime_choice.export_dir_of(weights)
            if backend == "openvino":
                return cls(backends.OpenVinoBackend(export_dir, device, threads, precision), **kwargs)
            try:
                return cls(backends.OnnxRuntimeBackend(export_dir, device, threads), **kwargs)
            except backends.CudaProviderError as error:
                if not auto:
                    raise
                LOG.warning("backend auto: %s; running torch instead", error)
                backend = "torch"
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r}; use one of {backends.BACKENDS} or auto")
        from ros2_ttvos import checkpoint

        if threads:
            import torch

            torch.set_num_threads(threads)
        if weights is None and not checkpoint.SHIPPED_WEIGHTS.is_file():
            LOG.warning("no trained weights shipped: ImageNet backbone with an untrained head")
            model = checkpoint.build_model(None)
        else:
            path = checkpoint.SHIPPED_WEIGHTS if weights is None else Path(weights)
            model = checkpoint.build_model(checkpoint.load(path))
        return cls.from_model(model, device, precision, checkpoint.box_prompter(model), **kwargs)

    # --- object management -----------------------------------------------------------------
    @property
    def object_ids(self) -> List[int]:
        """Ids of the tracked objects, in slot order."""
        return list(self._ids)

    def reset(self) -> None:
        """Forget every object and the frame geometry."""
        self._ids: List[int] = []
        self._state: Optional[ObjectState] = None
        self._geometry: Optional[Tuple[int, int, int, int]] = None  # input h, w; internal h, w

    def close(self) -> None:
        """Release the backend (GPU memory included)."""
        self.reset()
        self.backend.close()

    def add_objects(self, image: np.ndarray, mask: np.ndarray) -> List[int]:
        """Start tracking every object of ``mask`` from ``image``; an existing id is replaced.

        image: (H, W, 3) uint8 RGB; mask: (H, W) integer labels, 0 = background, 1..255 = ids.
        Returns the ids added, ascending. Objects not in the mask keep being tracked.
        """
        self._check_image(image)
        mask = np.asarray(mask)
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"mask must be an HxW integer label image, got shape {mask.shape} dtype {mask.dtype}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask size {mask.shape} differs from image size {image.shape[:2]}")
        ids = [int(v) for v in np.unique(mask) if v != 0]
        if not ids:
            raise ValueError("mask has no object pixels (all background)")
        bad = [v for v in ids if v < 1 or v > MAX_OBJECT_ID]
        if bad:
            raise ValueError(f"object ids must be in 1..{MAX_OBJECT_ID}, got {bad}")
        geometry = (*image.shape[:2], *internal_shape(*image.shape[:2], self.internal_size))
        if self._ids and geometry != self._geometry:
            raise ValueError(
                f"image size {image.shape[:2]} differs from the tracked stream's {self._geometry[:2]}; "
                "call reset() first"
            )
        small = self._resize(mask.astype(np.uint8), geometry, cv2.INTER_NEAREST)
        lost = [i for i in ids if not (small == i).any()]
        if lost:
            raise ValueError(f"objects {lost} vanish at the internal size {geometry[2:]}: too small to track")
        masks = np.stack([small == i for i in ids])[:, None].astype(np.float32)
        frame = self._to_input(image, geometry)
        new_state = ObjectState(*self.backend.encode(frame, masks))
        self._keep_slots([slot for slot, i in enumerate(self._ids) if i not in ids])
        self._geometry = geometry
        self._ids += ids
        if self._state is None:
            self._state = new_state
        else:
            self._state = ObjectState(*(np.concatenate([a, b]) for a, b in zip(self._state, new_state, strict=True)))
        self.backend.prepare(frame, tuple(self._state))
        return ids

    def add_objects_from_boxes(
        self, image: np.ndarray, boxes: Mapping[int, Sequence[float]], method: Optional[str] = None
    ) -> List[int]:
        """Start tracking the objects in ``boxes`` ({object_id: (x0, y0, x1, y1)} in pixels of
        ``image``, x1 and y1 exclusive), as ``add_objects`` does with the mask ``prompt_mask`` makes.
        A bad box raises ValueError and changes nothing. Returns the ids added."""
        return self.add_objects(image, self.prompt_mask(image, boxes, None, method))

    def add_objects_from_prompts(
        self,
        image: np.ndarray,
        boxes: Optional[Mapping[int, Sequence[float]]] = None,
        clicks: Optional[Mapping[int, Sequence[Sequence[float]]]] = None,
        method: Optional[str] = None,
    ) -> List[int]:
        """Start tracking objects given by boxes, clicks ({object_id: [(x, y, positive), ...]},
        pixels of ``image``), or both for one object; see ``prompt_mask``. Returns the ids added."""
        return self.add_objects(image, self.prompt_mask(image, boxes, clicks, method))

    def box_mask(
        self, image: np.ndarray, boxes: Mapping[int, Sequence[float]], method: Optional[str] = None
    ) -> np.ndarray:
        """``prompt_mask`` with boxes only."""
        return self.prompt_mask(image, boxes, None, method)

    def prompt_mask(
        self,
        image: np.ndarray,
        boxes: Optional[Mapping[int, Sequence[float]]] = None,
        clicks: Optional[Mapping[int, Sequence[Sequence[float]]]] = None,
        method: Optional[str] = None,
    ) -> np.ndarray:
        """The label image that ``boxes`` and ``clicks`` make on ``image`` by ``method``
        (``prompts.BOX_METHODS``; None or "auto": "head" where the weights have a box head, else
        "network"; clicks need "head"). ValueError for a bad box or click (empty, outside the image, an id out
        of range) and for an object that ends with no pixels. The tracked objects are untouched (any
        frame size will do)."""
        from ros2_ttvos import prompts

        self._check_image(image)
        return prompts.prompt_labels(self, image, boxes, clicks, method, MAX_OBJECT_ID)

    def remove_objects(self, object_ids: Iterable[int]) -> None:
        """Stop tracking ``object_ids``; unknown ids raise ValueError and nothing is removed."""
        object_ids = [int(i) for i in object_ids]
        unknown = [i for i in object_ids if i not in self._ids]
        if unknown:
            raise ValueError(f"unknown object ids {unknown}; tracked: {self._ids}")
        self._keep_slots([slot for slot, i in enumerate(self._ids) if i not in object_ids])
        if not self._ids:
            self._geometry = None
        else:
            self.backend.prepare(np.zeros((1, 3, *self._geometry[2:]), np.float32), tuple(self._state))

    def _keep_slots(self, keep: List[int]) -> None:
        """Keep only the objects in slots ``keep`` (re-packed in that order)."""
        self._ids = [self._ids[slot] for slot in keep]
        self._state = None if not keep else ObjectState(*(a[keep] for a in self._state))

    @property
    def state(self) -> Optional[ObjectState]:
        """Every object's state, rows in the order of ``object_ids`` (None with no objects); what
        the next ``step`` starts from. Read it, do not change it."""
        return self._state

    def state_nbytes(self) -> int:
        """Bytes held by the per-object state (fixed for a given frame size and object count)."""
        return 0 if self._state is None else sum(a.nbytes for a in self._state)

    # --- per frame ---------------------------------------------------------------------------
    def step(self, image: np.ndarray) -> TrackResult:
        """Segment every tracked object in the next frame.

        With no objects, returns an all-background label image and no confidences.
        """
        self._check_image(image)
        if not self._ids:
            return TrackResult(labels=np.zeros(image.shape[:2], np.uint8))
        geometry = (*image.shape[:2], *internal_shape(*image.shape[:2], self.internal_size))
        if geometry != self._geometry:
            raise ValueError(
                f"frame size {image.shape[:2]} differs from the tracked stream's {self._geometry[:2]}; "
                "call reset() and add the objects again"
            )
        gate = 0.0 if self.hold_when_lost == "none" else self.confidence_threshold
        slots, confidence, foreground, state = self.backend.step(
            self._to_input(image, geometry),
            tuple(self._state),
            gate,
            self.hold_when_lost == "state",
            self.search_region,
            self.region_state,
        )
        self._state = ObjectState(*state)
        if self.search_region:
            self._state = self._state._replace(hist=keep_main_component(self._state.hist))
        lookup = np.array([0, *self._ids], dtype=np.uint8)
        labels = self._resize(lookup[slots], geometry[2:] + geometry[:2], cv2.INTER_NEAREST)
        return TrackResult(
            labels=labels,
            confidences={i: float(c) for i, c in zip(self._ids, confidence, strict=True)},
            foreground=foreground,
            object_ids=list(self._ids),
        )

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: np.ndarray) -> None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise ValueError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3 RGB, got shape {image.shape}")
        if min(image.shape[:2]) < 8:
            raise ValueError(f"image of size {image.shape[:2]} is too small to track")

    @staticmethod
    def _resize(array: np.ndarray, geometry: Tuple[int, int, int, int], interpolation: int) -> np.ndarray:
        """Resize from geometry[:2] to geometry[2:] (h, w) unless they are equal."""
        h, w, th, tw = geometry
        if (h, w) == (th, tw):
            return array
        return cv2.resize(array, (tw, th), interpolation=interpolation)

    def _to_input(self, image: np.ndarray, geometry: Tuple[int, int, int, int]) -> np.ndarray:
        """(1, 3, h, w) float32 RGB in [0, 255] at the internal size."""
        resized = self._resize(image, geometry, cv2.INTER_AREA)
        return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)
