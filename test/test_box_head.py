"""The box head: crops and prompt maps, training samples, its training run, its file, its export."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.backends import OnnxRuntimeBackend, OpenVinoBackend, TorchBackend
from ros2_ttvos.box_train import BoxTrainer, export_box_head
from ros2_ttvos.data.box_samples import PromptBatches, prompt_sample
from ros2_ttvos.data_cli import main as data_main
from ros2_ttvos.export import export, validate
from ros2_ttvos.model.box_head import BoxHead, BoxHeadConfig, BoxPrompter
from ros2_ttvos.prompt_crops import crop_image, mask_box, paste, prompt_maps, region_of


def test_a_crop_pastes_back_onto_the_image_and_the_prompt_lands_on_the_object():
    mask = np.zeros((120, 200), np.uint8)
    mask[30:70, 60:150] = 1
    box = mask_box(mask > 0)
    region = region_of(mask.shape, box)
    assert region[0] < box[0] and region[2] > box[2]  # the head sees around the box
    crop = crop_image(mask, region, 64, nearest=True)
    maps = prompt_maps(region, 64, box, [(100.0, 50.0, True), (20.0, 20.0, False)])
    np.testing.assert_array_equal(maps[0] > 0, crop > 0)  # the box map is the box, in crop pixels
    assert maps[1].max() > 0.9 and crop[np.unravel_index(maps[1].argmax(), crop.shape)] == 1
    assert maps[2].max() < 0.5  # the negative click lies outside this crop
    back = paste(crop.astype(np.float32), region, mask.shape) > 0.5
    np.testing.assert_array_equal(back, mask > 0)
    whole = region_of(mask.shape, None)  # clicks alone: the whole image, no box
    assert whole == (0.0, 0.0, 200.0, 120.0) and not prompt_maps(whole, 32, None, [(5, 5, True)])[0].any()


def test_training_samples_are_a_function_of_seed_and_step(clip):
    frames, masks = clip

    def draw(rng):
        index = int(rng.integers(len(frames)))
        return frames[index], masks[index]

    batches = PromptBatches(draw, draw, 0.5, seed=4)
    a, b = batches.batch(7, 6, 64), batches.batch(7, 6, 64)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    crops, prompts, targets = a
    assert crops.shape == (6, 64, 64, 3) and prompts.shape == (6, 3, 64, 64) and targets.shape == (6, 64, 64)
    assert all(t.any() for t in targets)
    assert not np.array_equal(batches.batch(8, 6, 64)[2], targets)
    # Box prompts draw the box around the object: most of the target lies inside it.
    for seed in range(20):
        sample = prompt_sample(frames[0], masks[0], np.random.default_rng(seed), 64)
        crop, maps, target = sample
        if maps[0].any():
            assert (target * maps[0]).sum() > 0.8 * target.sum()
        else:  # clicks alone: at least one positive click, on the object
            assert maps[1].max() > 0.9 and target[np.unravel_index(maps[1].argmax(), target.shape)] == 1


@pytest.fixture()
def box_config(tiny_config, tmp_path):
    data = tiny_config["data"]
    pack = tmp_path / "pack"
    args = ["pack", "--davis", data["davis_root"], "--train-list", data["davis_train_list"]]
    assert data_main([*args, "--saliency", *data["saliency"][0], "--shard-mib", "0.01", "--out", str(pack)]) == 0
    shards = len(list((pack / "stills").glob("shard-*.tar")))
    assert shards >= 2
    return {
        "run_dir": str(tmp_path / "box-run"),
        "tracker_weights": str(checkpoint.SHIPPED_WEIGHTS),
        "seed": 0, "threads": 1, "precision": "fp32", "crop": 64, "steps": 4, "batch": 2, "lr": 1e-3,
        "warmup_steps": 1, "holdout_every": 2,
        "data": {
            "pack": str(pack), "holdout_shards": [shards - 1], "holdout_stills": 2,
            "davis_root": data["davis_root"], "davis_train_list": data["davis_train_list"],
            "resolution": "480p", "holdout": data["holdout"][:1], "still_fraction": 0.5,
        },
    }  # fmt: skip


def test_a_box_head_run_trains_selects_resumes_and_exports(box_config, tmp_path):
    trainer = BoxTrainer({**box_config, "steps": 2})
    start = {k: v.clone() for k, v in trainer.head.state_dict().items()}
    trainer.run()
    assert trainer.step == 2 and any(not torch.equal(start[k], v) for k, v in trainer.head.state_dict().items())
    log = (Path(box_config["run_dir"]) / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "holdout_sequences_J" in log[0] and log[2].split(",")[6] != ""
    resumed = BoxTrainer(box_config)
    assert resumed.resume() and resumed.step == 2 and resumed.best == trainer.best
    for key, value in trainer.head.state_dict().items():
        torch.testing.assert_close(resumed.head.state_dict()[key], value)
    resumed.run()
    assert resumed.step == 4
    out = tmp_path / "head.pt"
    extra = export_box_head(Path(box_config["run_dir"]), out)
    (Path(box_config["run_dir"]) / "last.pt").write_bytes(b"damaged")
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        BoxTrainer(box_config).resume()
    assert 0.0 <= extra["holdout"]["selection"] <= 1.0
    head, payload = checkpoint.load_box_head(out)
    trunk = payload["trunk"]
    shipped = checkpoint.build_model(checkpoint.load(checkpoint.SHIPPED_WEIGHTS))
    assert head.config.crop == 64 and trunk == shipped.backbone.frozen_digest()


def test_a_damaged_or_foreign_box_head_is_refused_clearly(tmp_path, network, caplog):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        checkpoint.load_box_head(damaged)
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load_box_head(tmp_path / "missing.pt")
    head = BoxHead(BoxHeadConfig(crop=64))
    foreign = tmp_path / "foreign.pt"
    checkpoint.save_atomic(checkpoint.box_head_payload(head, "0123456789abcdef"), foreign)
    assert checkpoint.box_prompter(network, foreign) is None and "another backbone trunk" in caplog.text
    fitting = tmp_path / "fitting.pt"
    checkpoint.save_atomic(checkpoint.box_head_payload(head, network.backbone.frozen_digest(), half=True), fitting)
    prompter = checkpoint.box_prompter(network, fitting)
    assert prompter is not None and prompter.backbone is network.backbone  # shared, not copied


def test_exporting_weights_whose_trunk_the_shipped_box_head_does_not_fit_warns(tmp_path, caplog):
    payload = checkpoint.load(checkpoint.SHIPPED_WEIGHTS)
    same = tmp_path / "same.pt"
    checkpoint.export_weights(checkpoint.SHIPPED_WEIGHTS, same)
    assert "another backbone trunk" not in caplog.text
    model = checkpoint.build_model(payload)
    with torch.no_grad():
        model.backbone.stem[0].weight.mul_(1.01)  # a frozen layer changed
    changed = tmp_path / "changed.pt"
    checkpoint.save_atomic(checkpoint.model_payload(model), changed)
    checkpoint.export_weights(changed, tmp_path / "changed-fp16.pt")
    assert "another backbone trunk" in caplog.text and "ttvos-box-train" in caplog.text


def test_every_backend_serves_the_box_head_as_pytorch_does(network, tmp_path):
    torch.manual_seed(1)
    prompter = BoxPrompter(network.backbone, BoxHead(BoxHeadConfig(crop=64))).eval()
    out = tmp_path / "export"
    description = export(network, out, prompter)
    assert description["box"]["crop"] == 64 and (out / "box.onnx").is_file()
    assert validate(network, out, steps=1, prompter=prompter)["box"] < 1e-3
    crops = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    prompts = np.zeros((2, 3, 64, 64), np.float32)
    prompts[:, 0, 10:50, 20:40] = 1
    expected = TorchBackend(network, "cpu", box_prompter=prompter).box(crops, prompts)
    assert expected.shape == (2, 1, 64, 64)
    for backend in (OnnxRuntimeBackend(out, "cpu"), OpenVinoBackend(out, "cpu")):
        assert backend.box_crop == 64
        np.testing.assert_allclose(backend.box(crops, prompts), expected, atol=1e-3)
    plain = tmp_path / "plain"
    export(network, plain)
    assert json.loads((plain / "state.json").read_text())["box"] is None
    without = OnnxRuntimeBackend(plain, "cpu")
    assert without.box_crop is None
    with pytest.raises(ValueError, match="no box head"):
        without.box(crops, prompts)
