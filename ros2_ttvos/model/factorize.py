"""Cheaper per-object layers from a trained network: low-rank factorization and narrowing.

Each object costs the layers of ``TTVOS.segment`` and ``update_state`` once more; a few of them
(the attention conv and the decoder's last conv, each with a short-term upsampling before it, the
short-term matching conv and the long-term branches' history path) hold most of that cost.
``factorize`` replaces each by its truncated SVD, in the form ``TTVOS`` builds for
``head_ranks``: at full rank this is exact; below, it is the best approximation of that rank in
the Frobenius norm of the weights, and the starting point for fine-tuning. ``narrow`` builds the
network with other widths (template, attention, decoder channels) from the trained filters of the
channels it keeps: the starting point for retraining the per-object layers.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ros2_ttvos.model.backbone import STAGE_CHANNELS
from ros2_ttvos.model.layers import branch_history_kernel
from ros2_ttvos.model.ttvos import HISTORY_FRAMES, LONG_TERM_BRANCHES, TTVOS, TTVOSConfig

# TTVOSConfig fields that set layer widths.
WIDTH_FIELDS = (
    "neck_channels",
    "short_term_channels",
    "long_term_channels",
    "long_term_groups",
    "attention_channels",
    "decoder_channels",
)


def _split_rank(matrix: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with left @ right the best rank-``rank`` approximation of ``matrix``."""
    if rank > min(matrix.shape):
        raise ValueError(f"rank {rank} exceeds the layer's full rank {min(matrix.shape)}")
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _input_reduction(weight: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Conv ``weight`` (out, in, k, k) as a 1x1 reduction to ``rank`` channels, then a kxk conv.

    Returns the reduction (in, rank) and the kxk weight (out, rank, k, k).
    """
    left, right = _split_rank(weight.transpose(0, 1).flatten(1), rank)  # (in, rank), (rank, out*k*k)
    return left, right.view(rank, weight.shape[0], *weight.shape[2:]).transpose(0, 1)


def _factor_conv(weight: torch.Tensor, bias: Optional[torch.Tensor], first: nn.Conv2d, second: nn.Conv2d) -> None:
    """Conv ``weight`` (out, in, k, k) and ``bias`` into the two convs of ``factorized_conv``."""
    if first.kernel_size != (1, 1):  # kxk to the rank, then 1x1
        left, right = _split_rank(weight.flatten(1), first.out_channels)
        first.weight.copy_(right.view_as(first.weight))
        second.weight.copy_(left.view_as(second.weight))
    else:  # 1x1 to the rank, then kxk
        reduction, kernel = _input_reduction(weight, first.out_channels)
        first.weight.copy_(reduction.t().reshape_as(first.weight))
        second.weight.copy_(kernel)
    if bias is not None:
        second.bias.copy_(bias)


def _factor_around_upsampling(
    conv: nn.Conv2d, upsample: nn.ConvTranspose2d, upsampled: slice, factored: nn.Sequential, folded: nn.ConvTranspose2d
) -> None:
    """A conv over a concatenation whose channels ``upsampled`` are ``upsample``'s output, reduced to a rank.

    factored[0]: 1x1 conv of the other input channels to the rank; factored[1]: the conv from the
    rank; folded: ``upsample`` with the 1x1 reduction of its channels folded in (both are linear).
    """
    reduction, kernel = _input_reduction(conv.weight, factored[0].out_channels)
    factored[1].weight.copy_(kernel)
    factored[1].bias.copy_(conv.bias)
    others = torch.ones(conv.in_channels, dtype=torch.bool)
    others[upsampled] = False
    factored[0].weight.copy_(reduction[others].t().reshape_as(factored[0].weight))
    folded.weight.copy_(torch.einsum("iokl,or->irkl", upsample.weight, reduction[upsampled]))
    folded.bias.copy_(upsample.bias @ reduction[upsampled])


@torch.no_grad()
def factorize(model: TTVOS, ranks: Dict[str, int]) -> TTVOS:
    """A new network with ``model``'s weights and the layers of ``ranks`` factorized to those ranks.

    ``model`` must have full-rank layers (empty ``head_ranks``); it is left unchanged.
    """
    if model.config.head_ranks:
        raise ValueError(f"factorize needs a full-rank network; this one has head_ranks {model.config.head_ranks}")
    slim = TTVOS(dataclasses.replace(model.config, head_ranks=dict(ranks)), pretrained_backbone=False)
    slim.to(next(model.parameters()).device)
    own = slim.state_dict()
    # Everything whose name and shape did not change is copied as is.
    slim.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}, strict=False
    )
    short_term, decoder = model.config.short_term_channels, model.config.decoder_channels
    if "attention" in ranks:  # input [st_up(s_st), s_lt]
        _factor_around_upsampling(model.attention[0], model.st_up, slice(0, short_term), slim.attention, slim.st_up)
    if "final" in ranks:  # input [r4, r4_skip, st_up4(s_st)]
        upsampled = slice(2 * decoder, 3 * decoder)
        _factor_around_upsampling(model.final[0][0], model.st_up4, upsampled, slim.final[0], slim.st_up4)
    if "st_match" in ranks:
        _factor_conv(model.st_match[0].weight, model.st_match[0].bias, *slim.st_match[:2])
    if "lt_history" in ranks:
        for name in LONG_TERM_BRANCHES:
            full_branch, slim_branch = getattr(model, f"lt_{name}"), getattr(slim, f"lt_{name}")
            kernel = branch_history_kernel(full_branch, model._hist_in_clue)
            _factor_conv(kernel, None, *slim.lt_history[name])
            # The branch's 1x1 projection keeps its f8 and coordinate inputs.
            project = full_branch[0].weight
            kept = torch.cat([project[:, model._f8_in_clue], project[:, model._coords_in_clue]], dim=1)
            slim_branch[0].weight.copy_(kept)
    return slim


def _input_segments(config: TTVOSConfig) -> Dict[str, List[int]]:
    """Widths of the tensors that each layer reading a concatenation takes, in order (see TTVOS)."""
    i, lt, d, ranks = config.short_term_channels, config.long_term_channels, config.decoder_channels, config.head_ranks
    history_in_clue = 0 if "lt_history" in ranks else 2 * HISTORY_FRAMES
    segments = {
        "st_template.0.weight": [config.neck_channels, 2 * HISTORY_FRAMES],
        "st_match.0.weight": [2 * i, config.neck_channels],
        "lt_blend.0.weight": [lt, lt],
        "skip4.0.weight": [d, d],
        "final.0.0.weight": [d, d] if "final" in ranks else [d, d, d],
        **{f"lt_{name}.0.weight": [STAGE_CHANNELS[8], history_in_clue, 3] for name in LONG_TERM_BRANCHES},
    }
    if "attention" not in ranks:
        segments["attention.0.weight"] = [i, lt]
    return segments


def _kept_channels(old: int, new: int, groups: int) -> torch.Tensor:
    """Which ``new`` of ``old`` channels a narrowed layer keeps: the first new/groups of each of
    ``groups`` equal blocks when both divide (a grouped convolution then keeps part of every
    group), else the first ``new``."""
    if old % groups == 0 and new % groups == 0:
        return torch.arange(old).view(groups, old // groups)[:, : new // groups].flatten()
    return torch.arange(new)


def _kept_inputs(old: List[int], new: List[int], groups: int) -> Optional[torch.Tensor]:
    """The kept input channels of a layer reading a concatenation: each part narrowed on its own.
    None when the parts do not correspond."""
    if len(old) != len(new) or any(n > o for o, n in zip(old, new, strict=True)):
        return None
    offsets = [sum(old[:k]) for k in range(len(old))]
    return torch.cat([offset + _kept_channels(o, n, groups) for offset, o, n in zip(offsets, old, new, strict=True)])


@torch.no_grad()
def narrow(model: TTVOS, overrides: Dict) -> TTVOS:
    """A new network with ``model``'s config changed by ``overrides`` (any TTVOSConfig fields).

    A narrower layer takes its weights from the wider one: the kept channels of every width are
    chosen the same way in the layers that make them and in those that read them
    (``_kept_channels``; each part of a concatenated input on its own), so that each kept channel
    keeps its trained filters. Layers that grow or do not correspond start fresh. The result is a
    starting point for training, not an approximation (the long-term embedding's softmax, for one,
    spans all of its channels). ``model`` is left unchanged.
    """
    variant = TTVOS(dataclasses.replace(model.config, **overrides), pretrained_backbone=False)
    variant.to(next(model.parameters()).device).train(model.training)
    groups = model.config.long_term_groups
    old_segments, new_segments = _input_segments(model.config), _input_segments(variant.config)
    grouped = {f"{name}.weight" for name, m in variant.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    theirs, kept = model.state_dict(), {}
    for name, ours in variant.state_dict().items():
        old = theirs.get(name)
        if old is None or old.dim() != ours.dim() or any(n > o for n, o in zip(ours.shape, old.shape, strict=True)):
            continue
        value = old
        for dim, (o, n) in enumerate(zip(old.shape, ours.shape, strict=True)):
            if dim == 1 and name in new_segments:  # a concatenated input
                index = _kept_inputs(old_segments.get(name, [o]), new_segments[name], groups)
            elif dim == 1 and name in grouped:  # inputs within a group: the group's kept channels
                index = torch.arange(n)
            else:
                index = _kept_channels(o, n, groups)
            if index is None:
                break
            value = value.index_select(dim, index.to(value.device))
        else:
            kept[name] = value
    variant.load_state_dict(kept, strict=False)
    return variant
