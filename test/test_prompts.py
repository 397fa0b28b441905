"""Box and click prompts: checked with clear errors, turned into masks, tracking started from them."""

import json

import numpy as np
import pytest

from ros2_ttvos import metrics
from ros2_ttvos.demo import main as demo_main
from ros2_ttvos.evaluate import main as eval_main
from ros2_ttvos.prompt_crops import interior_point, jittered, mask_box
from ros2_ttvos.prompts import BOX_METHODS, check_boxes, check_clicks
from ros2_ttvos.tracker import Tracker


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ({}, "no boxes"),
        ({1: (10, 10, 5, 20)}, "empty or inverted"),
        ({1: (10, 10, 10, 20)}, "empty or inverted"),
        ({1: (500, 10, 600, 20)}, "outside"),
        ({1: (10, 10, float("nan"), 20)}, "finite"),
        ({1: (10, 10, 20)}, "4 finite numbers"),
        ({0: (10, 10, 20, 20)}, "must be in 1..255"),
    ],
)
def test_bad_boxes_get_clear_errors(boxes, message):
    with pytest.raises(ValueError, match=message):
        check_boxes(boxes, (240, 427))


def test_boxes_are_clipped_to_the_image_and_jitter_stays_inside():
    assert check_boxes({3: (-5.2, 10, 500, 30.6)}, (240, 427)) == {3: (0, 10, 427, 31)}
    rng = np.random.default_rng(0)
    for _ in range(100):
        x0, y0, x1, y1 = jittered((0, 0, 427, 240), rng, 0.2, (240, 427))
        assert 0 <= x0 < x1 <= 427 and 0 <= y0 < y1 <= 240


@pytest.fixture(scope="module")
def shipped_tracker():
    return Tracker.from_pretrained(None, device="cpu", backend="torch", internal_size=240)


def test_the_click_a_person_would_make_is_deep_inside_the_object():
    mask = np.zeros((40, 60), bool)
    mask[5:35, 10:20] = True  # an L: a tall bar and a foot
    mask[25:35, 10:50] = True
    x, y = interior_point(mask)
    assert mask[int(y), int(x)] and 10 < x < 20 and 25 <= y < 35  # in the corner, the thickest part
    square = np.zeros((21, 21), bool)
    square[:, :] = True
    assert interior_point(square) == (10.0, 10.0)  # the image border counts as the object's border


def test_the_demo_starts_from_one_click(tmp_path):
    assert demo_main(["--offline", "--click", "--internal-size", "240", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["JF"] > 0.8 and (tmp_path / "overlay.mp4").stat().st_size > 10_000  # 0.856 measured


def test_a_box_starts_tracking_with_a_mask_closer_to_the_object_than_the_box(shipped_tracker, clip):
    frames, masks = clip
    car = masks[0] > 0
    box = mask_box(car)
    filled = np.zeros_like(car)
    filled[box[1] : box[3], box[0] : box[2]] = True
    j = {}
    for method in BOX_METHODS:
        shipped_tracker.reset()
        labels = shipped_tracker.box_mask(frames[0], {5: box}, method)
        assert set(np.unique(labels)) <= {0, 5}
        j[method] = float(metrics.region_similarity((labels == 5)[None], car[None])[0])
    assert j["box"] == pytest.approx(float(metrics.region_similarity(filled[None], car[None])[0]))
    assert j["network"] > j["box"] + 0.05 and j["grabcut"] > j["box"]
    assert j["head"] > max(j["network"], j["grabcut"])  # the shipped box head, trained for it
    shipped_tracker.reset()
    assert shipped_tracker.add_objects_from_boxes(frames[0], {5: box}) == [5]
    result = shipped_tracker.step(frames[1])
    assert metrics.region_similarity((result.labels == 5)[None], (masks[1] > 0)[None])[0] > 0.7


def test_clicks_make_a_mask_with_the_box_head_and_bad_clicks_get_clear_errors(shipped_tracker, clip):
    frames, masks = clip
    car = masks[0] > 0
    ys, xs = np.nonzero(car)
    inside = (float(np.median(xs)), float(np.median(ys)), True)
    shipped_tracker.reset()
    labels = shipped_tracker.prompt_mask(frames[0], None, {2: [inside]})
    assert metrics.region_similarity((labels == 2)[None], car[None])[0] > 0.5
    x0, y0, x1, y1 = mask_box(car)
    with_negative = shipped_tracker.prompt_mask(frames[0], {2: (x0, y0, x1, y1)}, {2: [(x0 + 1.0, y0 + 1.0, False)]})
    assert (with_negative == 2).any() and set(np.unique(with_negative)) <= {0, 2}
    for clicks, message in [
        ({2: [(9000.0, 5.0, True)]}, "outside"),
        ({2: [(5.0, 5.0)]}, r"\(x, y, positive\)"),
        ({2: []}, "empty list"),
        ({0: [inside]}, "must be in 1..255"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_clicks(clicks, car.shape)
    with pytest.raises(ValueError, match="neither a box nor a positive click"):
        shipped_tracker.prompt_mask(frames[0], None, {2: [(5.0, 5.0, False)]})
    with pytest.raises(ValueError, match="clicks need box method head"):
        shipped_tracker.prompt_mask(frames[0], {2: (x0, y0, x1, y1)}, {2: [inside]}, "grabcut")
    shipped_tracker.add_objects(frames[0], masks[0])
    assert shipped_tracker.add_objects_from_prompts(frames[0], clicks={3: [inside]}) == [3]
    assert shipped_tracker.object_ids == [1, 3]


def test_a_bad_box_changes_nothing(shipped_tracker, clip):
    frames, masks = clip
    shipped_tracker.reset()
    shipped_tracker.add_objects(frames[0], masks[0])
    for boxes in ({2: (10, 10, 5, 5)}, {2: (9000, 0, 9100, 50)}):
        with pytest.raises(ValueError):
            shipped_tracker.add_objects_from_boxes(frames[0], boxes)
        assert shipped_tracker.object_ids == [1]
    with pytest.raises(ValueError, match="differs from the tracked stream"):
        shipped_tracker.add_objects_from_boxes(frames[0][:100], {2: (10, 10, 50, 50)})
    assert shipped_tracker.object_ids == [1]


def test_evaluation_can_start_from_boxes(tiny_config, tmp_path):
    out = tmp_path / "eval"
    args = ["--davis", tiny_config["data"]["davis_root"], "--split", "train", "--sequences", "seq-a,seq-b"]
    args += ["--backend", "torch", "--device", "cpu", "--internal-size", "64", "--init", "box", "--box-jitter", "0.1"]
    assert eval_main([*args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init"] == "box" and summary["box_method"] == "head" and summary["box_jitter"] == 0.1
    assert 0.0 < summary["given_J_mean"] < 1.0
    clicked = tmp_path / "clicked"
    assert eval_main([*args[:-4], "--init", "click", "--out", str(clicked)]) == 0
    summary = json.loads((clicked / "summary.json").read_text())
    assert summary["init"] == "click" and summary["box_method"] == "head" and 0.0 < summary["given_J_mean"] < 1.0
