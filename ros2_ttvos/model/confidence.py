"""How sure the tracker is that it still sees each object, and when an object counts as lost.

confidence = mean merged probability over the object's pixels (those labelled as it) x presence,
where presence = the object's share of the frame over its usual share (``area``), at most 1. The
network tends to keep a small, sure blob where a hidden object was; presence makes that read as
lost. An object whose confidence is below the threshold is lost: it keeps its long-term template
and usual area, so that an occluder is not learned as it. The tracker (``streaming.TrackingStep``)
and training (``recurrent.ClipRunner``) share this code, so that the long-term template learns
from the frames the tracker would learn from.
"""

from typing import Tuple

import torch

AREA_RATE = 0.2  # how fast an object's usual area follows its confident frames


def object_confidence(slots: torch.Tensor, kept: torch.Tensor, area: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The objects' confidence and share of the frame, both (..., N).

    slots: (..., H, W) labels (0 = background, k = the k-th object, ``merge.assign_slots``);
    kept: (..., N, H, W) the objects' merged probabilities (``merge.merge_objects``); area: (..., N)
    their usual shares of the frame.
    """
    count = kept.shape[-3]
    ids = torch.arange(1, count + 1, device=kept.device).view(-1, 1, 1)
    mine = (slots.unsqueeze(-3) == ids).to(kept.dtype)
    pixels = mine.sum(dim=(-2, -1))
    sureness = (kept * mine).sum(dim=(-2, -1)) / pixels.clamp(min=1.0)
    share = mine.mean(dim=(-2, -1))
    presence = (share / area.clamp(min=1e-6)).clamp(max=1.0)
    return sureness * presence, share


def follow_area(area: torch.Tensor, share: torch.Tensor, confident: torch.Tensor) -> torch.Tensor:
    """The usual areas after a frame: confident objects' move towards their share, lost ones' stay."""
    return torch.where(confident, area + AREA_RATE * (share - area), area)
