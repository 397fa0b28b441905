"""Composed training clips: a target hidden behind a panel comes out again, a look-alike of a
target passes through, and the labels stay exact."""

import numpy as np

from ros2_ttvos.data.composite import CutOut, add_look_alike, hide_behind
from ros2_ttvos.metrics import BACK, HIDDEN


def two_targets(length: int):
    """A grey scene with two squares drifting right: target 1 (red) and target 2 (magenta)."""
    frames = np.full((length, 60, 100, 3), 90, np.uint8)
    labels = np.zeros((length, 60, 100), np.uint8)
    for t in range(length):
        frames[t, 10:24, 10 + t : 24 + t] = (200, 30, 30)
        labels[t, 10:24, 10 + t : 24 + t] = 1
        frames[t, 38:50, 60 + t : 72 + t] = (200, 30, 200)
        labels[t, 38:50, 60 + t : 72 + t] = 2
    return frames, labels


def striped_cut(rng: np.random.Generator) -> CutOut:
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, ::2] = (0, 220, 0)
    return CutOut(image, np.ones((20, 20), np.float32))


def test_a_hidden_target_comes_back_with_its_first_mask_whole_and_its_labels_exact():
    frames, labels = two_targets(12)
    came_back = 0
    for seed in range(20):
        hidden_frames, hidden_labels = hide_behind((frames, labels), np.random.default_rng(seed), striped_cut)
        np.testing.assert_array_equal(hidden_labels[0], labels[0])  # every first mask whole
        covered = hidden_labels != labels
        assert (hidden_labels[covered] == 0).all()  # covered pixels lose their label ...
        assert (hidden_frames[covered][:, 0] <= 100).all()  # ... and show the panel (no red in it)
        for target in (1, 2):
            area = (hidden_labels == target).sum(axis=(1, 2))
            hidden = np.flatnonzero(area < HIDDEN * area[0])
            if len(hidden) and (area[hidden[0] :] >= BACK * area[0]).any():
                came_back += 1
    assert came_back >= 10  # most draws hide one target and let it come out again


def test_short_clips_are_left_as_they_are():
    frames, labels = two_targets(4)
    hidden_frames, hidden_labels = hide_behind((frames, labels), np.random.default_rng(0), striped_cut)
    np.testing.assert_array_equal(hidden_frames, frames)
    np.testing.assert_array_equal(hidden_labels, labels)


def reddish(frames: np.ndarray) -> np.ndarray:
    """Pixels of target 1's colour, give or take the look-alike's colour change."""
    red, green, blue = (frames[..., c].astype(int) for c in range(3))
    return (red > 150) & (green < 45) & (blue < 45)


def test_a_look_alike_of_a_target_passes_as_background_in_front_of_the_targets_or_behind_them():
    frames, labels = two_targets(12)
    fronts = behinds = copies_of_target_1 = 0
    for seed in range(30):
        copied_frames, copied_labels = add_look_alike((frames, labels), np.random.default_rng(seed))
        assert copied_frames.shape == frames.shape and copied_labels.dtype == np.uint8
        changed = copied_labels != labels
        assert (copied_labels[changed] == 0).all()  # the copy takes labels away and gives none
        kept = labels > 0
        if changed.any():
            fronts += 1  # it covered a target somewhere: it passed in front
        elif ((copied_frames != frames).any(axis=-1) & kept).any():
            raise AssertionError("a copy behind the targets changed their pixels")
        else:
            behinds += 1
        copies_of_target_1 += (reddish(copied_frames) & (copied_labels == 0)).sum() > 20
    assert fronts >= 5 and behinds >= 5
    assert copies_of_target_1 >= 5  # unlabelled pixels of target 1's colour: its look-alike
    assert not (reddish(frames) & (labels == 0)).any()  # none in the clip before
