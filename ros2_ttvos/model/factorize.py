"""Cheaper per-object layers from a trained network: low-rank factorization and narrowing.

Each object costs the layers of ``TTVOS.segment`` and ``update_state`` once more; a few of them
(the attention conv and the decoder's last conv, each with a short-term upsampling before it, the
short-term matching conv and the long-term branches' history path) hold most of that cost.
``factorize`` replaces each by its truncated SVD, in the form ``TTVOS`` builds for
``head_ranks``: at full rank this is exact; below, it is the best approximation of that rank in
the Frobenius norm of the weights, and the starting point for fine-tuning. ``narrow`` builds the
network with other widths (template, attention, decoder channels), keeping every trained weight
whose shape does not change: the starting point for retraining the per-object layers.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ros2_ttvos.model.ttvos import LONG_TERM_BRANCHES, TTVOS, _branch_history_kernel

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
    """Conv ``weight`` (out, in, k, k) and ``bias`` into the two convs of ``_factorized_conv``."""
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
            kernel = _branch_history_kernel(full_branch, model._hist_in_clue)
            _factor_conv(kernel, None, *slim.lt_history[name])
            # The branch's 1x1 projection keeps its f8 and coordinate inputs.
            project = full_branch[0].weight
            kept = torch.cat([project[:, model._f8_in_clue], project[:, model._coords_in_clue]], dim=1)
            slim_branch[0].weight.copy_(kept)
    return slim


@torch.no_grad()
def narrow(model: TTVOS, overrides: Dict) -> TTVOS:
    """A new network with ``model``'s config changed by ``overrides`` (any TTVOSConfig fields).

    Every weight whose name and shape stay is copied (the backbone and neck, for other per-object
    widths); the others keep their fresh initialisation. ``model`` is left unchanged.
    """
    variant = TTVOS(dataclasses.replace(model.config, **overrides), pretrained_backbone=False)
    variant.to(next(model.parameters()).device).train(model.training)
    own = variant.state_dict()
    variant.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}, strict=False
    )
    return variant
