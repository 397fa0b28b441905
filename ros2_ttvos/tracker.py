"""Streaming multi-object tracker: the one inference API of ros2_ttvos (no ROS imports).

Use one Tracker per video stream::

    tracker = Tracker.from_pretrained()          # shipped weights, CUDA if present
    tracker.add_objects(first_rgb, label_mask)   # HxWx3 uint8, HxW labels (0 = background)
    for rgb in frames:
        result = tracker.step(rgb)               # result.labels, result.confidences

Object ids (1..255) are stable and independent of the tensor rows (slots) that hold their state.
Every object's state has a fixed size, so memory does not grow with the stream's length.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ros2_ttvos import checkpoint
from ros2_ttvos.model import TTVOS, TemplateState

LOG = logging.getLogger(__name__)

MAX_OBJECT_ID = 255
PAD_MULTIPLE = 32


@dataclass
class TrackResult:
    """Output of one tracked frame.

    labels: (H, W) uint8 label image at the input size, 0 = background, k = object k.
    confidences: {object_id: float in [0, 1]}, the mean foreground probability of the object over
        the pixels labelled as it (0.0 when it has no pixels).
    foreground: (N, h, w) float32 per-object foreground probabilities at the internal processing
        size, rows in the order of ``object_ids``, before the objects are merged.
    object_ids: ids of the rows of ``foreground``.
    """

    labels: np.ndarray
    confidences: Dict[int, float] = field(default_factory=dict)
    foreground: Optional[np.ndarray] = None
    object_ids: List[int] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available (logged), else CPU; otherwise the named device, checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        LOG.info("device=auto: no CUDA device, running on CPU")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda:N)") from error
    if resolved.type == "cuda" and (
        not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use auto, cpu or cuda:N)")
    return resolved


def soft_aggregate(foreground: torch.Tensor) -> torch.Tensor:
    """Merge per-object foreground probabilities (N, h, w) into (N+1, h, w) class probabilities.

    Background is the product of the complements; classes are combined by their odds ratios.
    """
    fg = foreground.clamp(1e-7, 1 - 1e-7)
    background = torch.prod(1 - fg, dim=0, keepdim=True).clamp(1e-7, 1 - 1e-7)
    probs = torch.cat([background, fg], dim=0)
    odds = probs / (1 - probs)
    return odds / odds.sum(dim=0, keepdim=True)


class Tracker:
    """Tracks any number of objects through one stream with a shared TTVOS network.

    internal_size: short side (pixels) at which frames are processed; None = the input size.
        Output labels are always at the input size.
    confidence_threshold: below it an object's long-term template is not updated with the
        frame's prediction, so the object can be picked up again after an occlusion.
    """

    def __init__(
        self,
        model: TTVOS,
        device: Union[str, torch.device] = "auto",
        internal_size: Optional[int] = 480,
        confidence_threshold: float = 0.5,
    ):
        if internal_size is not None and internal_size < PAD_MULTIPLE:
            raise ValueError(f"internal_size must be at least {PAD_MULTIPLE} or None, got {internal_size}")
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.internal_size = internal_size
        self.confidence_threshold = confidence_threshold
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        weights: Optional[Union[str, Path]] = None,
        device: str = "auto",
        **kwargs,
    ) -> "Tracker":
        """Build a tracker from a checkpoint file; None = the weights shipped with the package.

        When no weights are shipped, the network gets its ImageNet backbone and an untrained head,
        with a warning. A missing or damaged file raises ``checkpoint.CheckpointError``.
        """
        if weights is None and not checkpoint.SHIPPED_WEIGHTS.is_file():
            LOG.warning("no trained weights shipped: ImageNet backbone with an untrained head")
            return cls(checkpoint.build_model(None), device, **kwargs)
        path = checkpoint.SHIPPED_WEIGHTS if weights is None else Path(weights)
        return cls(checkpoint.build_model(checkpoint.load(path)), device, **kwargs)

    # --- object management -----------------------------------------------------------------
    @property
    def object_ids(self) -> List[int]:
        """Ids of the tracked objects, in slot order."""
        return list(self._ids)

    def reset(self) -> None:
        """Forget every object and the frame geometry."""
        self._ids: List[int] = []
        self._state: Optional[TemplateState] = None
        self._geometry: Optional[Tuple[int, int, int, int]] = None  # input h, w; internal h, w

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
        geometry = self._frame_geometry(image.shape[:2])
        if self._ids and geometry != self._geometry:
            raise ValueError(
                f"image size {image.shape[:2]} differs from the tracked stream's {self._geometry[:2]}; "
                "call reset() first"
            )
        small = self._resize(mask.astype(np.uint8), geometry, cv2.INTER_NEAREST)
        if any(not (small == i).any() for i in ids):
            lost = [i for i in ids if not (small == i).any()]
            raise ValueError(f"objects {lost} vanish at the internal size {geometry[2:]}: too small to track")
        with torch.inference_mode():
            feats = self.model.encode_image(self._to_tensor(image, geometry))
            prob = torch.from_numpy(np.stack([small == i for i in ids])[:, None].astype(np.float32))
            new_state = self.model.init_state(feats, self._pad(prob.to(self.device), geometry))
        self._keep_slots([slot for slot, i in enumerate(self._ids) if i not in ids])
        self._geometry = geometry
        self._ids += ids
        if self._state is None:
            self._state = new_state
        else:
            self._state = TemplateState(*(torch.cat([a, b]) for a, b in zip(self._state, new_state, strict=True)))
        return ids

    def remove_objects(self, object_ids: Iterable[int]) -> None:
        """Stop tracking ``object_ids``; unknown ids raise ValueError and nothing is removed."""
        object_ids = [int(i) for i in object_ids]
        unknown = [i for i in object_ids if i not in self._ids]
        if unknown:
            raise ValueError(f"unknown object ids {unknown}; tracked: {self._ids}")
        self._keep_slots([slot for slot, i in enumerate(self._ids) if i not in object_ids])
        if not self._ids:
            self._geometry = None

    def _keep_slots(self, keep: List[int]) -> None:
        """Keep only the objects in slots ``keep`` (re-packed in that order)."""
        self._ids = [self._ids[slot] for slot in keep]
        if not keep:
            self._state = None
            return
        index = torch.tensor(keep, device=self.device)
        self._state = TemplateState(*(t.index_select(0, index) for t in self._state))

    def state_nbytes(self) -> int:
        """Bytes held by the per-object state (fixed for a given frame size and object count)."""
        return 0 if self._state is None else sum(t.numel() * t.element_size() for t in self._state)

    # --- per frame ---------------------------------------------------------------------------
    def step(self, image: np.ndarray) -> TrackResult:
        """Segment every tracked object in the next frame.

        With no objects, returns an all-background label image and no confidences.
        """
        self._check_image(image)
        if not self._ids:
            return TrackResult(labels=np.zeros(image.shape[:2], np.uint8))
        geometry = self._frame_geometry(image.shape[:2])
        if geometry != self._geometry:
            raise ValueError(
                f"frame size {image.shape[:2]} differs from the tracked stream's {self._geometry[:2]}; "
                "call reset() and add the objects again"
            )
        h, w = geometry[2:]
        with torch.inference_mode():
            feats = self.model.encode_image(self._to_tensor(image, geometry))
            out = self.model.segment(feats, self._state)
            prob_fg = torch.softmax(out.logits, dim=1)[:, 1:]
            foreground = prob_fg[:, 0, :h, :w]
            slots = soft_aggregate(foreground).argmax(dim=0)
            area = torch.stack([(slots == k + 1).sum() for k in range(len(self._ids))]).float()
            mass = torch.stack([(foreground[k] * (slots == k + 1)).sum() for k in range(len(self._ids))])
            confidence = torch.where(area > 0, mass / area.clamp(min=1), torch.zeros_like(area))
            self._state = self.model.update_state(
                feats, self._state, out.weight, prob_fg, confidence >= self.confidence_threshold
            )
        lookup = np.array([0] + self._ids, dtype=np.uint8)
        labels = lookup[slots.to(torch.uint8).cpu().numpy()]
        labels = cv2.resize(labels, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        return TrackResult(
            labels=labels,
            confidences={i: float(c) for i, c in zip(self._ids, confidence.cpu().tolist(), strict=True)},
            foreground=foreground.float().cpu().numpy(),
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

    def _frame_geometry(self, size: Tuple[int, int]) -> Tuple[int, int, int, int]:
        h, w = size
        if self.internal_size is None:
            return h, w, h, w
        scale = self.internal_size / min(h, w)
        return h, w, max(1, round(h * scale)), max(1, round(w * scale))

    @staticmethod
    def _resize(array: np.ndarray, geometry: Tuple[int, int, int, int], interpolation: int) -> np.ndarray:
        h, w, ih, iw = geometry
        if (h, w) == (ih, iw):
            return array
        return cv2.resize(array, (iw, ih), interpolation=interpolation)

    def _pad(self, tensor: torch.Tensor, geometry: Tuple[int, int, int, int], mode: str = "constant") -> torch.Tensor:
        ih, iw = geometry[2:]
        pad_h, pad_w = -ih % PAD_MULTIPLE, -iw % PAD_MULTIPLE
        if not (pad_h or pad_w):
            return tensor
        return F.pad(tensor, (0, pad_w, 0, pad_h), mode=mode)

    def _to_tensor(self, image: np.ndarray, geometry: Tuple[int, int, int, int]) -> torch.Tensor:
        """(1, 3, H', W') float RGB in [0, 255], resized to the internal size and padded."""
        resized = self._resize(image, geometry, cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None].float()
        return self._pad(tensor, geometry, mode="replicate")
