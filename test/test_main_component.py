"""The search region follows the main piece of a mask that has split: main_component.py."""

import cv2
import numpy as np

from ros2_ttvos.main_component import GAP, NEWEST_BACKGROUND, NEWEST_FOREGROUND, keep_main_component
from ros2_ttvos.tracker import Tracker


def history(*objects):
    """(N, 6, 40, 60) mask history; each object a list of (y, x, h, w, p) foreground boxes."""
    hist = np.zeros((len(objects), 6, 40, 60), np.float32)
    for row, boxes in zip(hist, objects, strict=True):
        for y, x, h, w, p in boxes:
            row[NEWEST_FOREGROUND, y : y + h, x : x + w] = p
        row[NEWEST_BACKGROUND] = 1.0 - row[NEWEST_FOREGROUND]
        row[1, 0:3, 0:3] = 0.9  # an older frame's foreground is left alone
    return hist


def test_a_far_smaller_piece_is_dropped_and_the_main_piece_kept():
    hist = history([(5, 5, 8, 8, 0.9), (25, 40, 4, 4, 0.8), (5, 30, 2, 2, 0.3)])
    kept = keep_main_component(hist)
    fg = kept[0, NEWEST_FOREGROUND]
    assert np.array_equal(fg[5:13, 5:13], hist[0, NEWEST_FOREGROUND, 5:13, 5:13])  # the main piece
    assert fg[25:29, 40:44].max() == 0.0  # the far piece
    assert fg[5:7, 30:32].max() == 0.0  # faint foreground away from the main piece
    assert np.allclose(kept[0, NEWEST_BACKGROUND], 1.0 - fg)
    assert np.array_equal(kept[0, :NEWEST_BACKGROUND], hist[0, :NEWEST_BACKGROUND])
    assert hist[0, NEWEST_FOREGROUND, 25:29, 40:44].min() == 0.8  # the input is not changed


def test_pieces_closer_than_the_gap_count_as_one_and_single_pieces_are_unchanged():
    split = history([(5, 5, 8, 8, 0.9), (5, 13 + GAP, 8, 3, 0.9)])  # a body cut by a thin occluder
    assert np.array_equal(keep_main_component(split), split)
    whole = history([(10, 10, 6, 6, 0.7)], [], [(0, 0, 40, 60, 0.2)])  # one piece, empty, all faint
    assert np.array_equal(keep_main_component(whole), whole)


def test_each_object_keeps_its_own_main_piece():
    hist = history([(5, 5, 8, 8, 0.9), (30, 50, 3, 3, 0.9)], [(30, 50, 6, 6, 0.9), (5, 5, 2, 2, 0.9)])
    kept = keep_main_component(hist)[:, NEWEST_FOREGROUND]
    assert kept[0, 5:13, 5:13].min() == 0.9 and kept[0, 30:33, 50:53].max() == 0.0
    assert kept[1, 30:36, 50:56].min() == 0.9 and kept[1, 5:7, 5:7].max() == 0.0


def test_the_tracker_keeps_the_main_piece_in_its_state_with_the_region_only(clip):
    frames, masks = clip
    image, car = frames[0].copy(), masks[0]
    ys, xs = np.nonzero(car)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    small = [cv2.resize(a[crop], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_NEAREST) for a in (image, car)]
    h, w = small[1].shape
    assert ys.max() < image.shape[0] - h and xs.min() > w  # the copy lands far from the car
    look_alike = (slice(image.shape[0] - h, None), slice(0, w))
    image[look_alike] = np.where(small[1][..., None] > 0, small[0], image[look_alike])
    both = car.copy()
    both[look_alike] = np.maximum(both[look_alike], small[1])  # the mask spread onto a smaller copy
    pieces = {}
    for region in (True, False):
        tracker = Tracker.from_pretrained(None, device="cpu", backend="torch", internal_size=240)
        tracker.search_region = region
        tracker.add_objects(image, both)
        tracker.step(image)
        newest = tracker.state.hist[0, NEWEST_FOREGROUND] > 0.5
        pieces[region] = cv2.connectedComponents(newest.astype(np.uint8))[0] - 1
    assert pieces == {True: 1, False: 2}
