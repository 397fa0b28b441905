"""The two graphs of streaming inference, as modules that export to ONNX unchanged.

``ObjectEncoder`` is what ``Tracker.add_objects`` runs; ``TrackingStep`` is one frame of
``Tracker.step`` for all objects: segment, merge the objects, score them, update their state.
Every input and output is a plain tensor, and the per-object state (``hist``, ``st``, ``lt``,
``updates``: see ``TemplateState``; ``area``: the object's usual share of the frame) goes in and
comes out explicitly, so a runtime without PyTorch can run the tracker. Images are (1, 3, H, W)
float32 RGB in [0, 255] with H and W multiples of 16.
"""

from typing import Tuple

import torch
from torch import nn

from ros2_ttvos.model.confidence import follow_area, object_confidence
from ros2_ttvos.model.merge import assign_slots, merge_objects
from ros2_ttvos.model.search_region import search_region
from ros2_ttvos.model.ttvos import TTVOS, TemplateState


class ObjectEncoder(nn.Module):
    """(image, masks (N, 1, H, W) in {0, 1}) -> the N objects' initial state (area: mask share)."""

    def __init__(self, model: TTVOS):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return (*self.model.init_state(self.model.encode_image(image), masks), masks.mean(dim=(1, 2, 3)))


class TrackingStep(nn.Module):
    """One frame for N >= 1 objects.

    Inputs: image, hist, st, lt, updates, area, threshold (scalar: an object whose confidence is
    below it is lost, and keeps its long-term template and usual area), hold_state (scalar: 1 = a
    lost object keeps its short-term part, ``hist`` and ``st``, as well, so that it is looked for
    where and as it was last seen; 0 = those follow every frame), search (scalar: 1 = each
    object's foreground is weighted by its search region, ``model.search_region``; 0 or None:
    looked for everywhere), region_state (scalar, used with the region: 1 or None = each object's
    next state comes from its foreground in the region; 0 = from its whole foreground, the region
    choosing only the labels and the confidence, so that an object hidden under another keeps a
    state from where it is rather than from the occluder's pixels: docs/occlusion.md).
    Outputs: slots (H, W) int64, 0 = background, k = the k-th object; confidence (N,); foreground
    (N, H, W) (each object's own probability in its search region, before the merge); then the new hist, st, lt,
    updates, area. Each object's next state comes from its share after the merge
    (``merge_objects``), so that two objects cannot both claim the same pixels. The confidence
    and when an object counts as lost: ``model.confidence``.
    """

    def __init__(self, model: TTVOS):
        super().__init__()
        self.model = model

    def forward(
        self, image, hist, st, lt, updates, area, threshold, hold_state, search=None, region_state=None
    ) -> Tuple[torch.Tensor, ...]:
        state = TemplateState(hist, st, lt, updates)
        feats = self.model.encode_image(image)
        out = self.model.segment(feats, state, with_logits=False)
        whole = out.foreground[:, 0]
        foreground = whole
        if search is not None:
            region = search_region(hist, area, whole.shape[-2:])[:, 0]
            foreground = whole * (search * region + (1.0 - search))
        slots = assign_slots(foreground)
        kept = merge_objects(foreground)  # what each object keeps of the frame
        confidence, share = object_confidence(slots, kept, area)
        confident = confidence >= threshold
        if region_state is not None:  # 0: the next state from the merge of the whole foregrounds
            kept = region_state * kept + (1.0 - region_state) * merge_objects(whole)
        new_state = self.model.update_state(feats, state, out.weight, kept.unsqueeze(1), confident)
        keep = (~confident & (hold_state > 0.5)).view(-1, 1, 1, 1)
        hist = torch.where(keep, state.hist, new_state.hist)
        st = torch.where(keep, state.st, new_state.st)
        new_area = follow_area(area, share, confident)
        return (slots, confidence, foreground, hist, st, new_state.lt, new_state.updates, new_area)
