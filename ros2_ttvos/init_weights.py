"""The weights a training run starts from (``init_weights`` in its config), fitted to its network:
narrowed, factorized, or with another backbone trunk."""

from pathlib import Path
from typing import Dict, Union

import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.model import TTVOS
from ros2_ttvos.model.backbone import DEFAULT_VARIANT
from ros2_ttvos.model.factorize import WIDTH_FIELDS, factorize, narrow


def init_backbone(path: Union[str, Path]) -> str:
    """The backbone variant of checkpoint ``path``."""
    return checkpoint.load(path).get("config", {}).get("backbone", DEFAULT_VARIANT)


def initial_weights(model: TTVOS, path: Union[str, Path], log=None) -> Dict[str, torch.Tensor]:
    """The weights of checkpoint ``path`` for ``model``: narrowed (``factorize.narrow``) when the
    model has other widths; factorized (SVD) when only its ``head_ranks`` differ and the checkpoint
    has full-rank layers; with the model's own backbone (its ImageNet weights) and the checkpoint's
    head when their backbone variants differ (e.g. a Lite1 trial started from Lite0 weights)."""
    import logging

    log = log or logging.getLogger(__name__)
    source = checkpoint.build_model(checkpoint.load(path))  # CheckpointError if it is not ours
    ours, theirs = model.config, source.config
    changed = {name: getattr(ours, name) for name in WIDTH_FIELDS if getattr(ours, name) != getattr(theirs, name)}
    ranks, their_ranks = ours.head_ranks, theirs.head_ranks
    if changed:
        log.info("init weights %s: narrowed to widths %s", path, changed)
        weights = narrow(source, {**ours.to_dict(), "backbone": theirs.backbone}).state_dict()
    elif ranks and not their_ranks:
        log.info("init weights %s: factorizing %s", path, ranks)
        weights = factorize(source, ranks).state_dict()
    elif ranks != their_ranks:
        raise ValueError(
            f"init weights {path} have head_ranks {their_ranks}; this run's network has {ranks}: "
            "set model.head_ranks to match, or start from full-rank weights"
        )
    else:
        weights = source.state_dict()
    if ours.backbone != theirs.backbone:
        log.info("init weights %s: head from its %s, backbone %s from ImageNet", path, theirs.backbone, ours.backbone)
        own = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
        weights = {**{k: v for k, v in weights.items() if not k.startswith("backbone.")}, **own}
    return weights
