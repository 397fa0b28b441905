"""Factorized per-object layers: exact at full rank, cheaper per object below it; the exact
inference shortcuts (foreground from the logit difference, slots without normalising)."""

import pytest
import torch

from ros2_ttvos.bench_timing import model_info
from ros2_ttvos.bench_variants import WIDTH_VARIANTS
from ros2_ttvos.model import TTVOS, TTVOSConfig
from ros2_ttvos.model.factorize import factorize, narrow
from ros2_ttvos.model.layers import transposed_conv_as_conv
from ros2_ttvos.model.merge import assign_slots, soft_aggregate
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep

FULL_RANKS = {"attention": 128, "st_match": 64, "final": 48, "lt_history": 64}  # the layers' full ranks
SLIM_RANKS = {"attention": 16, "st_match": 16, "final": 16, "lt_history": 16}  # config/slim.yaml


def three_objects(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, 96, 160, generator=generator) * 255
    masks = torch.zeros(3, 1, 96, 160)
    masks[0, :, 10:50, 10:60] = 1
    masks[1, :, 40:90, 70:120] = 1
    masks[2, :, 5:30, 120:155] = 1
    return image, masks


def run_steps(model, steps: int = 3):
    """Outputs of ObjectEncoder, then ``steps`` TrackingSteps on other frames (every object kept)."""
    image, masks = three_objects()
    threshold, hold = torch.tensor(0.0), torch.tensor(0.0)
    with torch.no_grad():
        state = ObjectEncoder(model)(image, masks)
        outputs = [state]
        for index in range(steps):
            frame = three_objects(seed=1 + index)[0]
            slots, confidence, foreground, *state = TrackingStep(model)(frame, *state, threshold, hold)
            outputs.append((slots, confidence, foreground, *state))
    return outputs


def decided(foreground: torch.Tensor) -> torch.Tensor:
    """The pixels whose label no near-tie between objects leaves to rounding (an untrained head
    leaves many; there two exact computations may label either object)."""
    top2 = torch.topk(soft_aggregate(foreground), 2, dim=0).values
    return top2[0] - top2[1] > 1e-4


def test_factorization_at_full_rank_is_exact(network):
    factored = factorize(network, FULL_RANKS).eval()
    assert factored.config.head_ranks == FULL_RANKS and not network.config.head_ranks
    for ours, theirs in zip(run_steps(network), run_steps(factored), strict=True):
        for a, b in zip(ours[-5:-1], theirs[-5:-1], strict=True):  # the state but the area
            assert torch.allclose(a, b, atol=1e-4)
        assert torch.allclose(ours[-1], theirs[-1], atol=1e-3)  # area: shares of the slots (near-ties)
    (slots, confidence, foreground), (slots_f, confidence_f, foreground_f) = (
        outputs[-1][:3] for outputs in (run_steps(network), run_steps(factored))
    )
    assert torch.allclose(foreground, foreground_f, atol=1e-4)
    sure = decided(foreground)
    assert torch.equal(slots[sure], slots_f[sure])


def test_factorized_network_costs_less_per_object_and_tracks(network):
    slim = factorize(network, SLIM_RANKS).eval()
    full_cost, slim_cost = (model_info(m, "cpu", shape=(96, 160)) for m in (network, slim))
    assert slim_cost["gflops_per_extra_object"] < 0.5 * full_cost["gflops_per_extra_object"]
    assert slim_cost["parameters"] < full_cost["parameters"]
    slots, confidence, foreground = run_steps(slim, steps=1)[-1][:3]
    assert slots.shape == (96, 160) and confidence.shape == (3,) and foreground.shape == (3, 96, 160)
    assert torch.isfinite(foreground).all()


def test_bad_ranks_are_refused(network):
    with pytest.raises(ValueError, match="unknown layers"):
        TTVOSConfig(head_ranks={"decoder": 8})
    with pytest.raises(ValueError, match="positive integers"):
        TTVOSConfig(head_ranks={"final": 0})
    with pytest.raises(ValueError, match="exceeds the layer's full rank 48"):
        factorize(network, {"final": 64})
    with pytest.raises(ValueError, match="full-rank network"):
        factorize(factorize(network, {"final": 8}), {"final": 8})


@pytest.mark.parametrize("ranks", [{}, SLIM_RANKS])
def test_foreground_from_the_logit_difference_equals_the_softmax(network, ranks):
    model = factorize(network, ranks).eval() if ranks else network
    image, masks = three_objects()
    with torch.no_grad():
        feats = model.encode_image(image)
        state = model.init_state(feats, masks)
        with_logits = model.segment(feats, state)
        without = model.segment(feats, state, with_logits=False)
    assert without.logits is None
    assert torch.allclose(with_logits.foreground, torch.softmax(with_logits.logits, dim=1)[:, 1:], atol=1e-6)
    assert torch.allclose(without.foreground, with_logits.foreground, atol=1e-5)


def test_slots_are_the_argmax_of_the_soft_aggregate():
    generator = torch.Generator().manual_seed(0)
    foreground = torch.rand(4, 64, 80, generator=generator) ** 3
    foreground[:, :8] = 0.0  # no object: the background wins
    foreground[1, 8:16] = 1.0  # clamped at the top
    slots = assign_slots(foreground)
    assert torch.equal(slots, soft_aggregate(foreground).argmax(dim=0))
    assert set(slots.unique().tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("shape", [(16, 4, 4, 2, 1), (64, 16, 4, 2, 1), (64, 16, 4, 4, 0)])
def test_a_transposed_conv_equals_its_plain_conv_and_pixel_shuffle(shape):
    c_in, c_out, kernel_size, stride, padding = shape
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(c_in, c_out, kernel_size, stride=stride, padding=padding)
    x = torch.randn(2, c_in, 13, 17)
    kernel, bias, pad = transposed_conv_as_conv(up)
    with torch.no_grad():
        as_conv = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, kernel, bias, padding=pad), stride)
        assert torch.allclose(as_conv, up(x), atol=1e-5)


def test_narrowed_networks_keep_the_unchanged_weights_and_cost_less_per_object():
    """``ttvos-bench --width-sweep`` times copies of the network with narrower per-object layers."""
    model = TTVOS(TTVOSConfig(head_ranks=SLIM_RANKS), pretrained_backbone=False).eval()
    for ours, theirs in zip(run_steps(narrow(model, {})), run_steps(model), strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    per_object = model_info(model, "cpu", shape=(96, 160))["gflops_per_extra_object"]
    for name, overrides in WIDTH_VARIANTS.items():
        if not overrides:
            continue
        variant = narrow(model, overrides)
        assert all(getattr(variant.config, key) == value for key, value in overrides.items()), name
        assert torch.equal(variant.neck[0].weight, model.neck[0].weight), name
        assert model_info(variant, "cpu", shape=(96, 160))["gflops_per_extra_object"] < per_object, name


def _dropped(width: int, kept_width: int, groups: int = 4) -> torch.Tensor:
    """Channels that narrowing ``width`` to ``kept_width`` drops: all but the first
    kept_width/groups of each of ``groups`` blocks."""
    dropped = torch.ones(width, dtype=torch.bool)
    dropped[torch.arange(width).view(groups, -1)[:, : kept_width // groups].flatten()] = False
    return dropped


@torch.no_grad()
def test_narrowing_keeps_what_the_kept_channels_compute():
    """With the channels that narrowing drops read by no layer (their weights zeroed there), the
    narrowed network computes what the wide one does: the whole step for the decoder; the
    long-term key branch (grouped convolutions) at its kept channels."""
    wide = TTVOS(TTVOSConfig(head_ranks=SLIM_RANKS), pretrained_backbone=False).eval()
    drop = _dropped(16, 8)
    both = torch.cat([drop, drop])  # [r4, f4 part] and [r4, skip] inputs
    wide.up8[1].weight[drop] = 0  # transposed convs: inputs on dim 0
    wide.final[1].weight[drop] = 0
    wide.skip4[0].weight[:, both] = 0
    wide.final[0][0].weight[:, both] = 0
    narrowed = narrow(wide, {"decoder_channels": 8})
    assert narrowed.up8[0][0].out_channels == 8
    encoded, *steps = zip(run_steps(narrowed), run_steps(wide), strict=True)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*encoded, strict=True))
    for (slots, *rest, area), (slots_w, *rest_w, area_w) in steps:
        sure = decided(rest[1])  # rest[1]: foreground
        assert torch.equal(slots[sure], slots_w[sure])
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(rest, rest_w, strict=True))
        assert torch.allclose(area, area_w, atol=1e-3)  # shares of the labels (near-ties)

    drop = _dropped(64, 32)
    wide.lt_key[1].weight[:, 8:] = 0  # inputs 8-15 of each group of 16: the dropped channels
    narrowed = narrow(wide, {"long_term_channels": 32})
    image, masks = three_objects()
    hist = torch.rand(3, 6, 12, 20)
    theirs = wide._branch("key", wide.encode_image(image), hist)[:, ~drop]
    ours = narrowed._branch("key", narrowed.encode_image(image), hist)
    assert ours.shape[1] == 32 and torch.allclose(ours, theirs, atol=1e-5)
