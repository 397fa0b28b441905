"""The box head: a prompt (box and/or clicks) on a crop -> the object's mask in that crop.

A small decoder over the tracker's own backbone, the part of it no checkpoint trains (stem and
blocks up to stride 16, ``LiteBackbone.frozen_features``): one head serves every tracker checkpoint whose
frozen trunk it was trained on (``LiteBackbone.frozen_digest``), and costs no backbone weights
of its own. Inputs are made by ``prompt_crops``: the crop (N, 3, S, S) float RGB in [0, 255]
and the prompt maps (N, 3, S, S) (box, positive clicks, negative clicks), S a multiple of 16.
The decoder goes from stride 16 to stride 2, reading the features and the prompt maps
(average-pooled) at every stride, and ends with a bilinear upsampling to S.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ros2_ttvos.model.backbone import FROZEN_STAGE_CHANNELS, LiteBackbone
from ros2_ttvos.prompt_crops import PROMPT_CHANNELS


@dataclass(frozen=True)
class BoxHeadConfig:
    """Sizes of the box head (saved with its weights)."""

    crop: int = 256  # side of the square crop the head sees
    widths: Tuple[int, int, int, int] = (64, 48, 32, 16)  # decoder channels at stride 16, 8, 4, 2

    def to_dict(self) -> Dict:
        return asdict(self)


def _conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)
    )


class BoxHead(nn.Module):
    """Decoder of the box head; ``forward(features, prompts)`` gives (N, 1, S, S) logits."""

    def __init__(self, config: BoxHeadConfig = BoxHeadConfig()):
        super().__init__()
        self.config = config
        w16, w8, w4, w2 = config.widths
        c = FROZEN_STAGE_CHANNELS
        p = PROMPT_CHANNELS
        # Stride 16: the box covers most of the crop; dilated convs see all of it.
        self.at16 = nn.Sequential(_conv(c[16] + p, w16), _conv(w16, w16, 2), _conv(w16, w16, 4))
        self.at8 = nn.Sequential(_conv(w16 + c[8] + p, w8), _conv(w8, w8))
        self.at4 = nn.Sequential(_conv(w8 + c[4] + p, w4), _conv(w4, w4))
        self.at2 = nn.Sequential(_conv(w4 + c[2] + p, w2), nn.Conv2d(w2, 1, 1))

    def forward(self, features: Tuple[torch.Tensor, ...], prompts: torch.Tensor) -> torch.Tensor:
        f2, f4, f8, f16 = features
        x = self.at16(torch.cat([f16, F.avg_pool2d(prompts, 16)], dim=1))
        for layer, skip, stride in ((self.at8, f8, 8), (self.at4, f4, 4), (self.at2, f2, 2)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip, F.avg_pool2d(prompts, stride)], dim=1))
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class BoxPrompter(nn.Module):
    """(crops, prompts) -> (N, 1, S, S) foreground probability: the graph every backend runs.

    ``backbone`` is the tracker's (shared, not copied); only ``head`` has weights of its own.
    """

    def __init__(self, backbone: LiteBackbone, head: BoxHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def logits(self, crops: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.frozen_features(crops), prompts)

    def forward(self, crops: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(crops, prompts))
