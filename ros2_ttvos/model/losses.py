"""The paper's three training losses (weights 1 / 1 / 1 by default)."""

from typing import Dict

import torch
import torch.nn.functional as F

from ros2_ttvos.model.layers import heatmap_at_stride


def ttvos_losses(outputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Loss terms of a batch of clips.

    outputs: what ``ClipRunner`` returns for frames 1..T-1 (K objects per clip).
    labels: (B, T, H, W) int64 ground truth for all T frames, 0 = background, k = the k-th target.
    Returns ``segmentation`` (pixel-wise NLL of the merged class probabilities), ``transition``
    (MSE between each object's predicted transition map and GT_t - prediction_{t-1} at stride 8)
    and ``auxiliary`` (BCE of the stride-8 auxiliary head against the object's downsampled ground
    truth).
    """
    outputs = {name: value.float() for name, value in outputs.items()}  # losses in float32
    target = labels[:, 1:]
    k = outputs["log_probs"].shape[2] - 1
    segmentation = F.nll_loss(outputs["log_probs"].flatten(0, 1), target.flatten(0, 1))
    ids = torch.arange(1, k + 1, device=labels.device).view(1, 1, k, 1, 1)
    per_object = (target.unsqueeze(2) == ids).to(outputs["transition"].dtype)  # (B, T-1, K, H, W)
    gt_heat = heatmap_at_stride(per_object.flatten(0, 2).unsqueeze(1), 8)  # (B*(T-1)*K, 2, H8, W8)
    transition_target = gt_heat - outputs["prev_heat"].flatten(0, 2).detach()
    transition = F.mse_loss(outputs["transition"].flatten(0, 2), transition_target)
    auxiliary = F.binary_cross_entropy_with_logits(outputs["aux_logits"].flatten(0, 2), gt_heat[:, 1:])
    return {"segmentation": segmentation, "transition": transition, "auxiliary": auxiliary}
