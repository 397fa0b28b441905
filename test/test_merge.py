"""Objects that share a frame: the merge the labels come from also drives each object's state."""

import numpy as np
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.export import OPSET
from ros2_ttvos.model import ttvos_losses
from ros2_ttvos.model.layers import heatmap_at_stride
from ros2_ttvos.model.merge import assign_slots, merge_objects, soft_aggregate
from ros2_ttvos.model.recurrent import ClipRunner
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep


def _exported_merge(sample: torch.Tensor, path):
    """``merge_objects`` exported to ONNX with ``sample``'s object count, run by ONNX Runtime."""
    import onnxruntime

    class Merge(torch.nn.Module):
        def forward(self, foreground):
            return merge_objects(foreground)

    torch.onnx.export(
        Merge(), (sample,), path, input_names=["foreground"], output_names=["merged"],
        dynamic_axes={"foreground": {0: "objects"}, "merged": {0: "objects"}}, opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda foreground: session.run(None, {"foreground": foreground.numpy()})[0]


def test_one_object_keeps_its_own_probability_and_several_share_by_the_soft_aggregate(tmp_path):
    generator = torch.Generator().manual_seed(0)
    one = torch.rand(1, 8, 10, generator=generator)
    three = torch.rand(3, 8, 10, generator=generator)
    assert torch.equal(merge_objects(one), one)
    assert torch.allclose(merge_objects(three), soft_aggregate(three)[1:])
    assert torch.all(merge_objects(three).sum(dim=0) <= 1 + 1e-6)
    # A graph exported with two objects (as ttvos-export traces the step) selects on the object
    # count it is run with.
    exported = _exported_merge(torch.rand(2, 8, 10, generator=generator), tmp_path / "merge.onnx")
    assert np.allclose(exported(one), one, atol=1e-6)
    assert np.allclose(exported(three), soft_aggregate(three)[1:], atol=1e-6)
    # Batched over clips (training): the object axis is the third from the end.
    batch = torch.stack([three, three.flip(0)])
    assert torch.allclose(merge_objects(batch)[1], merge_objects(three.flip(0)))


def test_soft_aggregate_stays_finite_in_reduced_precision():
    certain = torch.tensor([[[1.0, 0.0]], [[0.5, 1.0]]], dtype=torch.bfloat16)
    merged = soft_aggregate(certain)
    assert merged.dtype == torch.float32 and torch.isfinite(merged).all()
    assert torch.equal(assign_slots(certain.float()), merged.argmax(dim=0))


def shipped_step(clip, masks):
    model = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS)).eval()
    frames, _ = clip
    image = torch.from_numpy(frames[0][:240, :432].copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        state = ObjectEncoder(model)(image, masks)
        following = torch.from_numpy(frames[1][:240, :432].copy()).permute(2, 0, 1)[None].float()
        outputs = TrackingStep(model)(following, *state, torch.tensor(0.0), torch.tensor(0.0))
        feats = model.encode_image(following)
        raw = model.segment(feats, model_state(state), with_logits=False)
    return model, outputs, raw


def model_state(state):
    from ros2_ttvos.model.ttvos import TemplateState

    return TemplateState(*state[:4])


def test_two_objects_on_the_same_pixels_end_with_disjoint_histories(clip):
    _, masks = clip
    car = torch.from_numpy(masks[0][:240, :432].astype(np.float32))[None, None]
    _, outputs, raw = shipped_step(clip, torch.cat([car, car]))  # both claim the car
    foreground, hist = outputs[2], outputs[3]
    assert (foreground.sum(dim=0) > 1.5).float().mean() > 0.02  # the raw probabilities overlap
    latest = hist[:, -1]  # the newest foreground heatmap of each object
    assert torch.all(latest.sum(dim=0) <= 1 + 1e-5)
    assert torch.allclose(latest, heatmap_at_stride(merge_objects(foreground).unsqueeze(1), 8)[:, 1], atol=1e-6)


def test_one_object_is_updated_from_its_own_probability(clip):
    _, masks = clip
    car = torch.from_numpy(masks[0][:240, :432].astype(np.float32))[None, None]
    _, outputs, raw = shipped_step(clip, car)
    assert torch.allclose(outputs[3][:, -1:], heatmap_at_stride(raw.foreground, 8)[:, 1:], atol=1e-6)


def test_training_merges_the_objects_of_a_clip_as_the_tracker_does():
    torch.manual_seed(0)
    model = checkpoint.build_model(None)
    runner = ClipRunner(model)
    frames = torch.rand(2, 3, 3, 64, 96) * 255
    labels = torch.zeros(2, 3, 64, 96, dtype=torch.long)
    labels[:, :, 8:40, 8:40] = 1
    labels[:, :, 24:56, 48:90] = 2
    first = torch.stack([(labels[:, 0] == k).float() for k in (1, 2)], dim=1)
    outputs = runner(frames, first)
    assert outputs["log_probs"].shape == (2, 2, 3, 64, 96)
    assert torch.allclose(outputs["log_probs"].exp().sum(dim=2), torch.ones(2, 2, 64, 96), atol=1e-5)
    losses = ttvos_losses(outputs, labels)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    # One object per clip: the loss is the two-class cross entropy of the logits, as before.
    single = runner(frames, first[:, :1])
    assert single["log_probs"].shape == (2, 2, 2, 64, 96)
    one_labels = (labels == 1).long()
    assert torch.isfinite(ttvos_losses(single, one_labels)["segmentation"])
