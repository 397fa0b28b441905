"""Training forward pass: whole clips run recurrently, several objects per clip, merged as the
tracker merges them.

The model's own predictions feed the next frame, as at inference; every object's state is
updated from its share after the merge (``merge.merge_objects``), and the segmentation loss is
taken on the merged class probabilities, the output the tracker labels from.

``lose_rate``: the share of (object, frame) pairs whose prediction is replaced by an empty mask
before it updates the state, as if the tracker had lost the object there (its long-term
template is kept, as the tracker keeps a lost object's). The frames after must find it again
without a short-term template (made from that empty mask), from the long-term one: the failure
the run's weights showed after occlusions (docs/occlusion.md).

``lost_threshold``: an object whose confidence (``model.confidence``) falls below it on a frame
keeps its long-term template and usual area there, as the tracker keeps them with its
``confidence_threshold``; 0 updates the long-term template on every frame (runs before
2026-11-28). Without it, a template trained through a real occlusion in a clip learns the
occluder, which the tracker never lets it do.
"""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ros2_ttvos.model.confidence import follow_area, object_confidence
from ros2_ttvos.model.layers import heatmap_at_stride
from ros2_ttvos.model.merge import assign_slots, merge_objects, soft_aggregate
from ros2_ttvos.model.ttvos import TTVOS


class ClipRunner(nn.Module):
    """Wraps a ``TTVOS`` for training (and for ``DistributedDataParallel``, which wraps this)."""

    def __init__(self, model: TTVOS, lose_rate: float = 0.0, lost_threshold: float = 0.0):
        super().__init__()
        self.model = model
        self.lose_rate = lose_rate
        self.lost_threshold = lost_threshold

    def forward(self, frames: torch.Tensor, first_masks: torch.Tensor) -> Dict[str, torch.Tensor]:
        """frames: (B, T, 3, H, W) RGB in [0, 255]; first_masks: (B, K, H, W) in {0, 1}, the K
        targets of every clip on frame 0 (the same K for the whole batch).

        Returns, for frames 1..T-1: ``log_probs`` (B, T-1, K+1, H, W) log class probabilities
        after the merge, background first; per object ``transition`` (B, T-1, K, 2, H8, W8),
        ``aux_logits`` (B, T-1, K, 1, H8, W8) and ``prev_heat`` (B, T-1, K, 2, H8, W8), the
        stride-8 heatmap of the object's previous merged prediction (the transition map's
        reference).
        """
        model = self.model
        b, t = frames.shape[:2]
        k = first_masks.shape[1]
        height, width = first_masks.shape[-2:]

        def per_object(feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
            return feats if k == 1 else {name: v.repeat_interleave(k, dim=0) for name, v in feats.items()}

        outputs = {"log_probs": [], "transition": [], "aux_logits": [], "prev_heat": []}
        prev_kept = first_masks.reshape(b * k, 1, height, width)
        area = first_masks.float().mean(dim=(-2, -1))  # (B, K) usual shares, as ObjectEncoder's
        feats = per_object(model.encode_image(frames[:, 0]))
        state = model.init_state(feats, prev_kept)
        for index in range(1, t):
            feats = per_object(model.encode_image(frames[:, index]))
            out = model.segment(feats, state)
            foreground = out.foreground.float().view(b, k, height, width)  # merged in float32
            # One object: the paper's two-class softmax of its logits; several: the merge.
            single = k == 1
            log_probs = F.log_softmax(out.logits.float(), dim=1) if single else torch.log(soft_aggregate(foreground))
            kept = merge_objects(foreground)  # (B, K, H, W)
            found = None  # (B, K): who updates the long-term template; None: every object
            if self.training and self.lose_rate > 0:  # simulated losses (module docstring)
                found = torch.rand(b, k, device=kept.device) >= self.lose_rate
                kept = kept * found.view(b, k, 1, 1).to(kept.dtype)
            if self.lost_threshold > 0:  # lost as the tracker judges it (a simulated loss: confidence 0)
                with torch.no_grad():
                    confidence, share = object_confidence(assign_slots(foreground), kept, area)
                    found = confidence >= self.lost_threshold
                    area = follow_area(area, share, found)
            kept = kept.view(b * k, 1, height, width)
            found = None if found is None else found.view(b * k)
            outputs["log_probs"].append(log_probs.view(b, k + 1, height, width))
            outputs["transition"].append(out.transition.unflatten(0, (b, k)))
            outputs["aux_logits"].append(out.aux_logits.unflatten(0, (b, k)))
            outputs["prev_heat"].append(heatmap_at_stride(prev_kept, 8).unflatten(0, (b, k)))
            state = model.update_state(feats, state, out.weight, kept, found)  # as the tracker gates a lost object
            prev_kept = kept
        return {key: torch.stack(value, dim=1) for key, value in outputs.items()}
