"""Shared fixtures: the bundled sample clip, a network with the real backbone weights, a tiny
training config over a DAVIS-layout folder made from the clip."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

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


SEQUENCES = ["seq-a", "seq-b", "seq-c", "seq-d"]


@pytest.fixture()
def tiny_config(tmp_path, clip):
    """Four 4-frame sequences in the DAVIS layout and three saliency pairs, made from the sample clip."""
    frames, masks = clip
    root = tmp_path / "DAVIS"
    for offset, name in enumerate(SEQUENCES):
        for index in range(4):
            frame = cv2.resize(frames[offset + index], (214, 120))
            mask = cv2.resize(masks[offset + index], (214, 120), interpolation=cv2.INTER_NEAREST)
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            (root / "Annotations" / "480p" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{index:05d}.jpg")
            Image.fromarray(mask * 255).save(root / "Annotations" / "480p" / name / f"{index:05d}.png")
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(SEQUENCES) + "\n")
    saliency = tmp_path / "saliency"
    saliency.mkdir()
    for index in range(3):
        Image.fromarray(cv2.resize(frames[5 + index], (160, 90))).save(saliency / f"{index}.jpg")
        mask = cv2.resize(masks[5 + index], (160, 90), interpolation=cv2.INTER_NEAREST)
        Image.fromarray(mask * 255).save(saliency / f"{index}.png")
    return {
        "run_dir": str(tmp_path / "run"),
        "seed": 3,
        "threads": 1,
        "device": "cpu",
        "size": [64, 96],
        "checkpoint_minutes": 10,
        "warmup_steps": 1,
        "holdout_every": 1000,
        "holdout_internal_size": 64,
        "data": {
            "davis_root": str(root),
            "davis_train_list": str(listing),
            "resolution": "480p",
            "holdout": SEQUENCES[1:],
            "saliency": [[str(saliency), str(saliency)]],
            "davis_still_fraction": 0.3,
        },
        "model": {},
        "loss_weights": {"segmentation": 1.0, "transition": 1.0, "auxiliary": 1.0},
        "stages": [
            {"name": "pretrain", "steps": 6, "frames": 3, "batch": 2, "lr": 1.0e-3, "synthetic": 1.0},
            {"name": "main", "steps": 6, "frames": 3, "batch": 2, "lr": 1.0e-3, "synthetic": 0.0},
        ],
    }
