"""Each object is looked for near where it was: the search region of model/search_region.py."""

import numpy as np
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.model.search_region import RADIUS, search_region
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep
from ros2_ttvos.tracker import Tracker


def test_the_region_is_the_last_mask_dilated_and_empty_masks_search_everywhere():
    y, x = 2 * RADIUS + 2, 2 * RADIUS + 2  # the object's cells: [y, y + 4) x [x, x + 4)
    hist = torch.zeros(2, 6, 4 * RADIUS + 8, 4 * RADIUS + 8)
    hist[0, 5, y : y + 4, x : x + 4] = 0.8  # the newest foreground of object 1; object 2's is empty
    hist[0, 1, 0:4, 0:4] = 1.0  # an older frame's foreground does not count
    shape = (8 * hist.shape[2], 8 * hist.shape[3])
    area = torch.tensor([16 / hist[0, 5].numel(), 0.1])  # object 1 at its usual size
    region = search_region(hist, area, shape)
    assert region.shape == (2, 1, *shape)
    cells = torch.nn.functional.avg_pool2d(region, 8)[0, 0]  # back to cells
    assert torch.allclose(cells[y : y + 4, x : x + 4], torch.ones(4, 4))  # scaled to a peak of 1
    assert cells[y - RADIUS + 1, x].item() > 0.9 and cells[y, x + 3 + RADIUS - 1].item() > 0.9  # within the radius
    assert cells[: y - RADIUS - 1].max().item() == 0.0 and cells[:, x + 4 + RADIUS + 1 :].max().item() == 0.0
    assert torch.equal(region[1], torch.ones(1, *shape))  # an empty last mask: everywhere
    shrunk = search_region(hist, torch.tensor([3 * 16 / hist[0, 5].numel(), 0.1]), shape)
    assert torch.equal(shrunk[0], torch.ones(1, *shape))  # under half its usual area: everywhere too


def test_the_step_weights_each_object_by_its_region_and_can_look_everywhere(clip):
    frames, masks = clip
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    image, following = (torch.from_numpy(f[:240, :432].copy()).permute(2, 0, 1)[None].float() for f in frames[:2])
    car = torch.from_numpy(masks[0][:240, :432].astype(np.float32))[None, None]
    step = TrackingStep(model)
    with torch.no_grad():
        state = ObjectEncoder(model)(image, car)
        free = step(following, *state, torch.tensor(0.5), torch.tensor(0.0))
        everywhere = step(following, *state, torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0))
        near = step(following, *state, torch.tensor(0.5), torch.tensor(0.0), torch.tensor(1.0))
    for a, b in zip(free, everywhere, strict=True):
        assert torch.equal(a, b)
    region = search_region(state[0], state[4], (240, 432))[0, 0]
    assert torch.allclose(near[2][0], free[2][0] * region)
    assert float(near[2][0][region == 0].max()) == 0.0 < float(free[2][0][region == 0].max())


def test_the_tracker_switches_the_region_at_run_time(clip):
    frames, masks = clip
    tracker = Tracker.from_pretrained(None, device="cpu", backend="torch", internal_size=240)
    assert tracker.search_region
    tracker.add_objects(frames[0], masks[0])
    near = tracker.step(frames[1]).foreground
    tracker.reset()
    tracker.search_region = False
    tracker.add_objects(frames[0], masks[0])
    everywhere = tracker.step(frames[1]).foreground
    assert (near <= everywhere + 1e-6).all() and (near < everywhere - 1e-3).any()


def test_region_state_off_keeps_the_labels_and_makes_the_state_from_the_whole_foregrounds(clip):
    """With the region, region_state 0 leaves slots, confidence and foreground as they are and
    makes the short-term state (hist, st) as looking everywhere would: from the merge of the
    unweighted foregrounds, here of two objects."""
    frames, masks = clip
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    image, following = (torch.from_numpy(f[:240, :432].copy()).permute(2, 0, 1)[None].float() for f in frames[:2])
    objects = torch.zeros(2, 1, 240, 432)
    objects[0, 0] = torch.from_numpy(masks[0][:240, :432].astype(np.float32))
    objects[1, 0, 20:80, 300:400] = 1.0  # a second object, away from the car
    step = TrackingStep(model)
    scalars = [torch.tensor(0.5), torch.tensor(0.0)]
    with torch.no_grad():
        state = ObjectEncoder(model)(image, objects)
        region = step(following, *state, *scalars, torch.tensor(1.0))
        whole_state = step(following, *state, *scalars, torch.tensor(1.0), torch.tensor(0.0))
        everywhere = step(following, *state, *scalars, torch.tensor(0.0))
        same = step(following, *state, *scalars, torch.tensor(1.0), torch.tensor(1.0))
    for a, b in zip(region, same, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(region[:3], whole_state[:3], strict=True):  # slots, confidence, foreground
        assert torch.equal(a, b)
    for index in (3, 4):  # hist, st
        assert torch.allclose(whole_state[index], everywhere[index], atol=1e-6)
        assert not torch.allclose(whole_state[index], region[index], atol=1e-4)


def test_the_tracker_switches_region_state_at_run_time(clip):
    """The switch leaves the frame's own foreground as it is and changes the state it leaves, so
    the next frame's foreground differs."""
    frames, masks = clip
    tracker = Tracker.from_pretrained(None, device="cpu", backend="torch", internal_size=240)
    assert not tracker.region_state  # the shipped weights' form (docs/occlusion.md)
    foregrounds = {}
    for region_state in (True, False):
        tracker.reset()
        tracker.region_state = region_state
        tracker.add_objects(frames[0], masks[0])
        foregrounds[region_state] = [tracker.step(frame).foreground for frame in frames[1:3]]
    assert np.array_equal(foregrounds[True][0], foregrounds[False][0])
    assert not np.allclose(foregrounds[True][1], foregrounds[False][1], atol=1e-4)
