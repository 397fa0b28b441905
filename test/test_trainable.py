"""A stage that trains more of the backbone: the frozen trunk stays, runs resume exactly."""

from pathlib import Path

import pytest
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.model import TTVOS, TTVOSConfig
from ros2_ttvos.train import Trainer
from ros2_ttvos.weight_average import WeightAverage


def block_weights(model, index):
    return [p.detach().clone() for p in model.backbone.blocks[index].parameters()]


def unfreezing_config(config):
    """The tiny run whose second stage trains the backbone's last three blocks, averaged."""
    first, second = config["stages"]
    return {**config, "average_half_life": 2, "stages": [first, {**second, "trainable_backbone_blocks": 3}]}


def test_a_stage_trains_more_blocks_and_keeps_the_trunk_the_box_head_reads(tiny_config, caplog):
    caplog.set_level("INFO")
    trainer = Trainer(unfreezing_config(tiny_config))
    trunk = trainer.model.backbone.frozen_digest()
    trainer.run(max_steps=6)  # the first stage: the last block alone
    assert trainer.model.backbone.trainable_blocks == 1
    before = {index: block_weights(trainer.model, index) for index in (12, 13, 14, 15)}
    trainer.run()
    assert "step 6: the backbone trains its last 3 blocks" in caplog.text
    for index in (13, 14, 15):  # taken in: trained
        after = block_weights(trainer.model, index)
        assert any(not torch.equal(a, b) for a, b in zip(before[index], after, strict=True))
    for a, b in zip(before[12], block_weights(trainer.model, 12), strict=True):  # still frozen
        assert torch.equal(a, b)
    assert trainer.model.backbone.frozen_digest() == trunk
    averaged = trainer.average.averaged(trainer.model)
    assert averaged.backbone.frozen_digest() == trunk
    assert not torch.equal(next(averaged.backbone.blocks[13].parameters()), before[13][0])  # averaged too
    saved = checkpoint.load(Path(tiny_config["run_dir"]) / "last.pt")
    assert saved["trainable_backbone_blocks"] == 3


def test_a_run_resumed_after_the_switch_reaches_the_same_state(tiny_config, tmp_path):
    config = unfreezing_config(tiny_config)
    straight = Trainer({**config, "run_dir": str(tmp_path / "straight")})
    straight.run(max_steps=10)
    first = Trainer({**config, "run_dir": str(tmp_path / "split")})
    first.run(max_steps=8)
    second = Trainer({**config, "run_dir": str(tmp_path / "split")})
    assert second.resume() and second.step == 8
    assert second.model.backbone.trainable_blocks == 3  # rebuilt before Adam's state was loaded
    second.run(max_steps=2)
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    for name, value in straight.average.weights.items():
        assert torch.allclose(value.float(), second.average.weights[name].float(), atol=1e-6), name


def test_blocks_before_stride_32_cannot_be_trained(tiny_config):
    model = TTVOS(TTVOSConfig(), pretrained_backbone=False)
    model.backbone.set_trainable_blocks(5)  # Lite0's whole stride-32 stage
    with pytest.raises(ValueError, match="box head"):
        model.backbone.set_trainable_blocks(6)
    first, second = tiny_config["stages"]
    config = {**tiny_config, "stages": [first, {**second, "trainable_backbone_blocks": 6}]}
    with pytest.raises(ValueError, match="stage 'main': trainable_backbone_blocks must be 0 to 5"):
        Trainer(config)  # refused when the run starts, not at the stage


def test_the_average_takes_in_new_entries_at_their_values_and_lets_go_of_others():
    model = TTVOS(TTVOSConfig(), pretrained_backbone=False)
    average = WeightAverage(model)
    name = "backbone.blocks.14._depthwise_conv.weight"
    assert name not in average.weights and name in average.frozen
    model.backbone.set_trainable_blocks(2)
    average.follow(model)
    assert torch.equal(average.weights[name], model.state_dict()[name]) and name not in average.frozen
    model.backbone.set_trainable_blocks(1)
    average.follow(model)
    assert name not in average.weights and name in average.frozen
