"""A moving average of the network's weights while it trains (``average_half_life`` in the
training config; docs/run-v2-pretrain.md, fifth session).

From one hold-out check to the next the trained weights wander with the last few hundred
batches, and the checks swing with them. The exponential moving average of the recent weights
(Polyak averaging) is steadier; with averaging on, the run checks it and keeps it as ``best.pt``.
The half-life is counted in schedule steps, so a GPU step that counts k steps (``batch_scale``)
moves the average as k CPU steps do. What training changes is averaged: the parameters that
require gradients and the statistics of the normalisation layers that own them. Frozen entries
are taken from the network bit for bit (an average of a constant would turn its -0.0 into +0.0
and change the frozen trunk's digest, which the box head checks).
"""

import copy
from typing import Dict, Set

import torch


class WeightAverage:
    """The moving average of what training changes in a network, updated after every optimizer step."""

    def __init__(self, model: torch.nn.Module):
        trained = trained_entries(model)
        state = model.state_dict()
        self.weights: Dict[str, torch.Tensor] = {name: state[name].detach().clone() for name in trained}
        self.frozen = {name for name, value in state.items() if value.is_floating_point()} - trained

    def follow(self, model: torch.nn.Module) -> None:
        """Average what ``model`` trains now (a stage changed it): entries it takes in start at
        their current values, entries it no longer trains are the network's again."""
        trained = trained_entries(model)
        state = model.state_dict()
        for name in set(self.weights) - trained:
            del self.weights[name]
        for name in trained - set(self.weights):
            self.weights[name] = state[name].detach().clone()
        self.frozen = {name for name, value in state.items() if value.is_floating_point()} - trained

    def update(self, model: torch.nn.Module, steps: int, half_life: float) -> None:
        """Move the average towards ``model``'s weights by ``steps`` schedule steps; a
        ``half_life`` of 0 or less makes it equal to them."""
        keep = 0.5 ** (steps / half_life) if half_life > 0 else 0.0
        state = model.state_dict()
        names = list(self.weights)
        with torch.no_grad():
            torch._foreach_lerp_([self.weights[n] for n in names], [state[n].detach() for n in names], 1.0 - keep)

    def load(self, weights: Dict[str, torch.Tensor]) -> None:
        """Take the averaged weights a checkpoint saved (entries of frozen ones, which older
        checkpoints hold, are left out); ValueError when they are not this network's."""
        missing, extra = set(self.weights) - set(weights), set(weights) - set(self.weights) - self.frozen
        if missing or extra:
            raise ValueError(
                f"the averaged weights do not fit this network (missing {len(missing)}, extra {len(extra)})"
            )
        for name in self.weights:
            value = weights[name]
            if value.shape != self.weights[name].shape:
                raise ValueError(
                    f"averaged weight {name}: {tuple(value.shape)}, the network's {tuple(self.weights[name].shape)}"
                )
            self.weights[name].copy_(value)

    def averaged(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` holding the averaged weights (for checks and ``best.pt``)."""
        twin = copy.deepcopy(model)
        twin.load_state_dict(self.weights, strict=False)
        return twin


def trained_entries(model: torch.nn.Module) -> Set[str]:
    """State-dict names of what training changes: parameters that require gradients, and the
    floating-point buffers (normalisation statistics) of the modules that own such parameters."""
    names = set()
    for prefix, module in model.named_modules():
        own = [name for name, parameter in module.named_parameters(recurse=False) if parameter.requires_grad]
        if own:
            buffers = [name for name, buffer in module.named_buffers(recurse=False) if buffer.is_floating_point()]
            names.update(f"{prefix}.{name}" if prefix else name for name in own + buffers)
    return names
