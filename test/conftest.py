"""Shared fixtures: the bundled sample clip and a tracker with the real backbone weights."""

import numpy as np
import pytest
import torch

from ros2_ttvos.demo import sample_clip
from ros2_ttvos.model import TTVOS

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def clip():
    """(frames, masks): the first 12 frames of the bundled clip, RGB uint8 and labels {0, 1}."""
    sequence = sample_clip()
    frames = np.stack([sequence.image(i) for i in range(12)])
    masks = np.stack([sequence.mask(i) for i in range(12)])
    return frames, masks


@pytest.fixture(scope="session")
def network():
    """TTVOS with ImageNet backbone weights and a seeded head."""
    torch.manual_seed(0)
    return TTVOS(pretrained_backbone=True).eval()


@pytest.fixture(scope="session")
def export_dir(network, tmp_path_factory):
    """``network`` exported with ttvos-export's ``export`` (ONNX graphs and state.json)."""
    from ros2_ttvos.export import export

    out = tmp_path_factory.mktemp("onnx")
    export(network, out)
    return out


def two_object_mask(mask: np.ndarray) -> np.ndarray:
    """Split a one-object mask into object 1 (left half of it) and object 2 (right half)."""
    xs = np.nonzero(mask)[1]
    middle = int(np.median(xs))
    labels = mask.astype(np.uint8).copy()
    labels[:, middle:][labels[:, middle:] > 0] = 2
    return labels
