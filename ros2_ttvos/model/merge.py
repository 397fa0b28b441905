"""Merging several objects' foreground probabilities into one labelling.

Every object is segmented on its own; where two claim the same pixels, the merge decides. The
labels are its argmax (``assign_slots``), and each object's next state is updated from what it
keeps after it (``merge_objects``), in training as at inference, so that objects compete for
pixels instead of drifting onto each other.
"""

import torch


def _classes(foreground: torch.Tensor) -> torch.Tensor:
    """(..., N, H, W) -> (..., N+1, H, W): the background (the product of the complements) and
    the objects, all clamped to [1e-7, 1 - 1e-7]."""
    fg = foreground.clamp(1e-7, 1 - 1e-7)
    background = torch.prod(1 - fg, dim=-3, keepdim=True).clamp(1e-7, 1 - 1e-7)
    return torch.cat([background, fg], dim=-3)


def soft_aggregate(foreground: torch.Tensor) -> torch.Tensor:
    """Merge per-object foreground probabilities (..., N, H, W) into (..., N+1, H, W) class
    probabilities, background first: background is the product of the complements, and the
    classes are combined by their odds ratios (the paper's merge of several objects). Computed in
    float32 whatever the input's precision: the odds of 1 - 1e-7 overflow float16 and bfloat16."""
    probs = _classes(foreground.float())
    odds = probs / (1 - probs)
    return odds / odds.sum(dim=-3, keepdim=True)


def merge_objects(foreground: torch.Tensor) -> torch.Tensor:
    """The objects' shares of each pixel after the merge the labels come from: (..., N, H, W).

    N >= 2: the objects' rows of ``soft_aggregate``, so that objects compete for pixels (an
    object's state is updated from what it keeps, not from its raw probability). N = 1: the raw
    probability, as the paper uses a single object's heatmap directly. Training and inference
    both update the state from it. Eager code skips the merge of a single object; a traced graph
    keeps both and selects on the (dynamic) object count.
    """
    if not torch.jit.is_tracing() and foreground.shape[-3] == 1:
        return foreground
    merged = soft_aggregate(foreground)[..., 1:, :, :]  # a slice, not narrow: dynamic when traced
    count = torch._shape_as_tensor(foreground)[-3]
    return torch.where(count == 1, foreground.float(), merged)


def assign_slots(foreground: torch.Tensor) -> torch.Tensor:
    """(..., N, H, W) foreground probabilities -> (..., H, W) int64: 0 = background, k = the k-th object.

    The argmax of ``soft_aggregate``: odds grow with the probability and share one normaliser,
    so the winner is the most probable of the clamped probabilities and the background.
    """
    return _classes(foreground).max(dim=-3).indices
