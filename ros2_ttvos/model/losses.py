"""The paper's three training losses (weights 1 / 1 / 1 by default)."""

from typing import Dict

import torch
import torch.nn.functional as F

from ros2_ttvos.model.ttvos import heatmap_at_stride


def ttvos_losses(outputs: Dict[str, torch.Tensor], masks: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Loss terms of a clip.

    outputs: what ``TTVOS.forward`` returns for frames 1..T-1.
    masks: (B, T, 1, H, W) float ground truth in {0, 1} for all T frames.
    Returns ``segmentation`` (pixel-wise NLL of the 2-class softmax), ``transition`` (MSE between
    the predicted transition map and GT_t - prediction_{t-1} at stride 8) and ``auxiliary`` (BCE of
    the stride-8 auxiliary head against the downsampled ground truth).
    """
    target = masks[:, 1:]
    b, t = target.shape[:2]
    logits = outputs["logits"].flatten(0, 1)
    flat_target = target.flatten(0, 1)
    segmentation = F.cross_entropy(logits, flat_target[:, 0].long())
    gt_heat = heatmap_at_stride(flat_target, 8)
    transition_target = gt_heat - outputs["prev_heat"].flatten(0, 1).detach()
    transition = F.mse_loss(outputs["transition"].flatten(0, 1), transition_target)
    auxiliary = F.binary_cross_entropy_with_logits(outputs["aux_logits"].flatten(0, 1), gt_heat[:, 1:])
    return {"segmentation": segmentation, "transition": transition, "auxiliary": auxiliary}
