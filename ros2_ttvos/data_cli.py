"""``ttvos-data``: data sets made from what is reachable here.

    ttvos-data multi --davis ~/data/DAVIS --out ~/data/multi-holdout [--seed 0] [--variants 3] [--crowd]
    ttvos-data pack --davis ~/data/DAVIS --saliency IMG_DIR MASK_DIR [--saliency ...] --out DIR
    ttvos-data clips --config config/train.yaml --stage NAME [--batches 2] --out SHEET.jpg

``multi`` composes the multi-object benchmark from the hold-out train sequences
(``data.multi_benchmark``; ``--crowd``: its crowd form, each sequence's object among copies of
itself); score it with ``ttvos-eval --davis OUT --year 2017 --split val``.
``pack`` writes the training sets in the compact form that travels (``data.pack``). ``clips``
draws a stage's first batches as the trainer draws them and writes them as one image, a row per
clip with its labels overlaid: what a recipe change does to the clips, seen before a run trains on it.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from ros2_ttvos.data.batches import BatchSampler
from ros2_ttvos.data.multi_benchmark import make_benchmark
from ros2_ttvos.data.pack import write_pack
from ros2_ttvos.data.training_sets import training_sets
from ros2_ttvos.schedule import load_config
from ros2_ttvos.visualize import clip_sheet

LOG = logging.getLogger("ttvos-data")
HOLDOUT = ["bmx-bumps", "hockey", "swing"]  # config/train.yaml's hold-out sequences


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    multi = commands.add_parser("multi", help="multi-object benchmark from the hold-out train sequences")
    multi.add_argument("--davis", type=Path, required=True, help="DAVIS root holding the 2016 train sequences")
    multi.add_argument("--sequences", type=lambda s: [x for x in s.split(",") if x], default=HOLDOUT)
    multi.add_argument("--seed", type=int, default=0)
    multi.add_argument("--variants", type=int, default=3, help="composed sequences per source sequence")
    multi.add_argument("--crowd", action="store_true", help="each sequence's object alone among copies of itself")
    multi.add_argument("--out", type=Path, required=True)
    pack = commands.add_parser("pack", help="the training sets in the compact form that travels")
    pack.add_argument("--davis", type=Path, required=True, help="DAVIS root holding the 2016 train sequences")
    pack.add_argument(
        "--train-list", type=Path, default=Path("../shared/data/DAVIS/ImageSets/2016/train.txt"),
        help="the DAVIS16 train sequence names (hold-out sequences included)",
    )  # fmt: skip
    pack.add_argument("--saliency", nargs=2, action="append", default=[], metavar=("IMG_DIR", "MASK_DIR"))
    pack.add_argument("--shard-mib", type=float, default=8.0, help="still shards of at most this size (MiB)")
    pack.add_argument("--out", type=Path, required=True)
    clips = commands.add_parser("clips", help="a stage's first training batches as one image")
    clips.add_argument("--config", type=Path, default=Path("config/train.yaml"))
    clips.add_argument("--stage", required=True, help="the stage's name in the config")
    clips.add_argument("--batches", type=int, default=2)
    clips.add_argument("--out", type=Path, required=True, help="image file (.jpg or .png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "clips":
            sheet = stage_clips(load_config(args.config), args.stage, args.batches)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(args.out), sheet[:, :, ::-1]):
                raise OSError(f"cannot write {args.out}")
            print(f"{args.batches} batches of stage {args.stage} -> {args.out}")
            return 0
        if args.command == "pack":
            names = [line.strip() for line in args.train_list.read_text().splitlines() if line.strip()]
            description = write_pack(args.davis.expanduser(), names, args.saliency, args.out, args.shard_mib)
            print(
                f"DAVIS {len(names)} sequences {description['davis_mib']} MiB; {description['stills']} stills in "
                f"{description['still_shards']} shards of {min(description['still_shard_mib'])}-"
                f"{max(description['still_shard_mib'])} MiB -> {args.out}"
            )
            return 0
        description = make_benchmark(
            args.davis.expanduser(), args.sequences, args.out, args.seed, args.variants, crowd=args.crowd
        )
    except (ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    targets = sum(s["targets"] for s in description["sequences"])
    print(f"{len(description['sequences'])} sequences, {targets} targets -> {args.out}")
    return 0


def stage_clips(config: dict, name: str, batches: int) -> np.ndarray:
    """The first ``batches`` batches of stage ``name`` of ``config``, drawn as the trainer draws
    them (steps from the stage's first), as one image (``visualize.clip_sheet``)."""
    start = 0
    for stage in config["stages"]:
        if stage["name"] == name:
            break
        start += stage["steps"]
    else:
        raise ValueError(f"no stage {name!r} in the config; its stages: {[s['name'] for s in config['stages']]}")
    data = config["data"]
    sets = training_sets(data)
    sampler = BatchSampler(sets.clips, sets.stills, data.get("davis_still_fraction", 0.3), config["seed"])
    sheets = [clip_sheet(*sampler.batch(stage, start + step, config["size"])) for step in range(batches)]
    width = max(sheet.shape[1] for sheet in sheets)
    return np.concatenate([np.pad(sheet, ((0, 0), (0, width - sheet.shape[1]), (0, 0))) for sheet in sheets])


if __name__ == "__main__":
    sys.exit(main())
