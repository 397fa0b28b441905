"""A training pack (``ttvos-data pack``) gives the clips the folders give, up to codec loss."""

import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

from ros2_ttvos.data.clips import DavisClips, StillImages
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.data.pack import PackedStills, packed_sequences
from ros2_ttvos.data_cli import main as data_main


def test_a_pack_reads_back_the_folders_clips(tiny_config, tmp_path):
    data = tiny_config["data"]
    out = tmp_path / "pack"
    saliency = data["saliency"][0]
    args = ["pack", "--davis", data["davis_root"], "--train-list", data["davis_train_list"]]
    assert data_main([*args, "--saliency", *saliency, "--shard-mib", "0.05", "--out", str(out)]) == 0
    description = json.loads((out / "pack.json").read_text())
    assert description["stills"] == 3 and description["still_shards"] == len(list((out / "stills").iterdir()))
    for shard in (out / "stills").iterdir():  # at most the limit, unless one pair alone exceeds it
        with tarfile.open(shard) as archive:
            assert shard.stat().st_size <= 0.05 * 2**20 or len(archive.getmembers()) == 2
    names = description["davis_sequences"]
    folders = Davis(data["davis_root"], 2016, sequences=names)
    for packed, original in zip(packed_sequences(out, names), folders, strict=True):
        assert len(packed) == len(original)
        for index in range(len(original)):
            np.testing.assert_array_equal(packed.mask(index), original.mask(index))
            assert cv2.PSNR(packed.image(index), original.image(index)) > 30  # H.264 at CRF 23
    # The same draws give the same clips.
    for stage_frames in (3, 4):
        a = DavisClips(packed_sequences(out, names)).clip(np.random.default_rng(5), stage_frames, (64, 96))
        b = DavisClips(list(folders)).clip(np.random.default_rng(5), stage_frames, (64, 96))
        np.testing.assert_array_equal(a[1], b[1])
        assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() < 4
    stills, folder_stills = PackedStills(out), StillImages.from_folders([saliency])
    assert len(stills) == len(folder_stills) == 3
    for seed in range(3):
        (image, mask), (image_f, mask_f) = (s.sample(np.random.default_rng(seed)) for s in (stills, folder_stills))
        np.testing.assert_array_equal(mask, mask_f)  # 160x90: under the 432-px side, not resized
        assert cv2.PSNR(image, image_f) > 30


def test_training_reads_a_pack(tiny_config, tmp_path):
    from ros2_ttvos.train import Trainer

    data = tiny_config["data"]
    out = tmp_path / "pack"
    args = ["pack", "--davis", data["davis_root"], "--train-list", data["davis_train_list"]]
    assert data_main([*args, "--saliency", *data["saliency"][0], "--out", str(out)]) == 0
    config = {**tiny_config, "data": {**data, "pack": str(out), "davis_root": "", "saliency": []}}
    trainer = Trainer(config)
    trainer.run(max_steps=2)
    assert trainer.step == 2 and Path(config["run_dir"], "last.pt").is_file()
