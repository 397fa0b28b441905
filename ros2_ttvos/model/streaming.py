"""The two graphs of streaming inference, as modules that export to ONNX unchanged.

``ObjectEncoder`` is what ``Tracker.add_objects`` runs; ``TrackingStep`` is one frame of
``Tracker.step`` for all objects: segment, merge the objects, score them, update their state.
Every input and output is a plain tensor, and the per-object state (``hist``, ``st``, ``lt``,
``updates``; see ``TemplateState``) goes in and comes out explicitly, so a runtime without
PyTorch can run the tracker. Images are (1, 3, H, W) float32 RGB in [0, 255] with H and W
multiples of 16.
"""

from typing import Tuple

import torch
from torch import nn

from ros2_ttvos.model.ttvos import TTVOS, TemplateState

STATE_NAMES = ("hist", "st", "lt", "updates")


def soft_aggregate(foreground: torch.Tensor) -> torch.Tensor:
    """Merge per-object foreground probabilities (N, H, W) into (N+1, H, W) class probabilities.

    Background is the product of the complements; classes are combined by their odds ratios.
    """
    fg = foreground.clamp(1e-7, 1 - 1e-7)
    background = torch.prod(1 - fg, dim=0, keepdim=True).clamp(1e-7, 1 - 1e-7)
    probs = torch.cat([background, fg], dim=0)
    odds = probs / (1 - probs)
    return odds / odds.sum(dim=0, keepdim=True)


class ObjectEncoder(nn.Module):
    """(image, masks (N, 1, H, W) in {0, 1}) -> the N objects' initial state."""

    def __init__(self, model: TTVOS):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model.init_state(self.model.encode_image(image), masks))


class TrackingStep(nn.Module):
    """One frame for N >= 1 objects.

    Inputs: image, hist, st, lt, updates, threshold (scalar: objects whose confidence is below it
    keep their long-term template).
    Outputs: slots (H, W) int64, 0 = background, k = the k-th object; confidence (N,), the mean
    foreground probability over the object's pixels (0 without pixels); foreground (N, H, W);
    then the new hist, st, lt, updates.
    """

    def __init__(self, model: TTVOS):
        super().__init__()
        self.model = model

    def forward(self, image, hist, st, lt, updates, threshold) -> Tuple[torch.Tensor, ...]:
        state = TemplateState(hist, st, lt, updates)
        feats = self.model.encode_image(image)
        out = self.model.segment(feats, state)
        prob_fg = torch.softmax(out.logits, dim=1)[:, 1:]
        foreground = prob_fg[:, 0]
        slots = soft_aggregate(foreground).argmax(dim=0)
        ids = torch.arange(1, foreground.shape[0] + 1, device=image.device).view(-1, 1, 1)
        mine = (slots.unsqueeze(0) == ids).to(foreground.dtype)
        area = mine.sum(dim=(1, 2))
        confidence = (foreground * mine).sum(dim=(1, 2)) / area.clamp(min=1.0)
        new_state = self.model.update_state(feats, state, out.weight, prob_fg, confidence >= threshold)
        return (slots, confidence, foreground, *new_state)
