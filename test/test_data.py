"""DAVIS reading (2016 binary, 2017 palette), the evaluation loop's handling of late objects, video clips."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ros2_ttvos.data.clips import DavisClips
from ros2_ttvos.data.davis import Davis, read_mask, write_mask
from ros2_ttvos.evaluate import track_sequence
from ros2_ttvos.tracker import Tracker

SHARED_DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "DAVIS"


def test_davis16_val_as_shipped():
    davis = Davis(SHARED_DAVIS, 2016, "val", "480p")
    assert len(davis) == 20
    sequence = davis.sequence("blackswan")
    assert len(sequence) == 50
    image, mask = sequence.image(0), sequence.mask(0)
    assert image.shape == (480, 854, 3) and image.dtype == np.uint8
    assert mask.shape == (480, 854) and set(np.unique(mask)) == {0, 1}


def make_davis17(root: Path, frames: np.ndarray) -> None:
    """A two-object palette sequence in which object 2 first appears on frame 2."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("toy\n")
    for index, frame in enumerate(frames):
        image_dir = root / "JPEGImages" / "240p" / "toy"
        image_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(image_dir / f"{index:05d}.jpg")
        labels = np.zeros(frame.shape[:2], np.uint8)
        labels[20:60, 20:80] = 1
        if index >= 2:
            labels[100:150, 150:220] = 2
        write_mask(root / "Annotations" / "240p" / "toy" / f"{index:05d}.png", labels)


def test_davis17_palette_masks_and_late_objects(tmp_path, clip, network):
    frames = clip[0][:5, ::2, ::2].copy()
    make_davis17(tmp_path, frames)
    davis = Davis(tmp_path, 2017, "val", "240p")
    sequence = davis.sequence("toy")
    assert set(np.unique(sequence.mask(0))) == {0, 1}
    assert set(np.unique(sequence.mask(3))) == {0, 1, 2}
    run = track_sequence(Tracker.from_model(network, device="cpu", internal_size=96), sequence)
    assert run.object_ids == [1, 2]
    assert run.labels.shape == (5, 240, 427)
    np.testing.assert_array_equal(run.labels[2][run.truth[2] == 2], 2)  # given on its first frame
    assert len(run.step_seconds) == 4


def test_binary_masks_from_la_and_soft_pngs(tmp_path):
    values = np.array([[0, 100, 128, 255]], np.uint8)
    Image.fromarray(values, mode="L").convert("LA").save(tmp_path / "la.png")
    Image.fromarray(values, mode="L").save(tmp_path / "soft.png")
    for name in ("la.png", "soft.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name, binary=True), [[0, 0, 1, 1]])


class _StillSequence:
    """Four identical annotated frames: what DavisClips needs of a sequence."""

    def __init__(self, image: np.ndarray, mask: np.ndarray):
        self._image, self._mask = image, mask

    def __len__(self) -> int:
        return 4

    def image(self, index: int) -> np.ndarray:
        return self._image

    def mask(self, index: int) -> np.ndarray:
        return self._mask


def test_zoom_shows_video_frames_at_their_own_pixel_size():
    image = np.zeros((240, 432, 3), np.uint8)  # frames twice the crop's size
    mask = np.zeros((240, 432), np.uint8)
    mask[100:140, 196:236] = 1  # a 40 x 40 object
    clips = DavisClips([_StillSequence(image, mask)])
    rng = np.random.default_rng(0)
    whole = clips.clip(rng, 2, (120, 216), zoom=(1.0, 1.0))[1]
    own_size = clips.clip(rng, 2, (120, 216), zoom=(2.0, 2.0))[1]
    assert whole.shape == own_size.shape == (2, 120, 216)
    assert whole[0].sum() == 20 * 20 and own_size[0].sum() == 40 * 40
    with pytest.raises(ValueError, match="zoom"):
        clips.clip(rng, 2, (120, 216), zoom=(1.5, 1.0))
