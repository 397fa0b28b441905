"""How much of the backbone a stage trains (``trainable_backbone_blocks``).

The network's config names how many of the backbone's last blocks train (``TTVOSConfig``; 1, the
last block, unless the run's ``model`` sets more), and a stage may set its own
``trainable_backbone_blocks``. Only the stride-32 blocks may train: the blocks up to stride 16
are the frozen trunk that the box head reads (``LiteBackbone.frozen_features``).

When a stage changes the count, the optimizer is rebuilt over the parameters now trained, keeping
Adam's moments for those it trained before (the blocks taken in start with none), and a
checkpoint records the count its optimizer state belongs to, so that a resumed run rebuilds the
same optimizer before loading that state.
"""

from typing import Any, Dict, List, Optional

import torch

from ros2_ttvos.model import TTVOS


def stage_backbone_blocks(model: TTVOS, stage: Dict[str, Any]) -> int:
    """How many of the backbone's last blocks ``stage`` trains (the network's own count unless
    the stage sets one)."""
    return int(stage.get("trainable_backbone_blocks", model.config.trainable_backbone_blocks))


def check_stages(model: TTVOS, stages: List[Dict[str, Any]]) -> None:
    """ValueError naming the first stage whose ``trainable_backbone_blocks`` the backbone refuses,
    so that a run fails when it starts, not when it reaches that stage."""
    for stage in stages:
        try:
            model.backbone.check_trainable_blocks(stage_backbone_blocks(model, stage))
        except ValueError as error:
            raise ValueError(f"stage {stage['name']!r}: {error}") from error


def adam_over_trained(model: TTVOS, lr: float, previous: Optional[torch.optim.Optimizer] = None) -> torch.optim.Adam:
    """Adam over the parameters of ``model`` that require gradients, with the moments of
    ``previous`` for those it held."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    if previous is not None:
        for param in params:
            if param in previous.state:
                optimizer.state[param] = previous.state[param]
    return optimizer


def train_backbone_blocks(model: TTVOS, count: int, optimizer: torch.optim.Optimizer) -> torch.optim.Adam:
    """Train the backbone's last ``count`` blocks from now on; the optimizer to go on with."""
    model.backbone.set_trainable_blocks(count)
    return adam_over_trained(model, optimizer.param_groups[0]["lr"], optimizer)
