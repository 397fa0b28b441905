"""``ttvos-data``: data sets made from what is reachable here.

    ttvos-data multi --davis ~/data/DAVIS --out ~/data/multi-holdout [--seed 0] [--variants 3]
    ttvos-data pack --davis ~/data/DAVIS --saliency IMG_DIR MASK_DIR [--saliency ...] --out DIR

``multi`` composes the multi-object benchmark from the hold-out train sequences
(``data.multi_benchmark``); score it with ``ttvos-eval --davis OUT --year 2017 --split val``.
``pack`` writes the training sets in the compact form that travels (``data.pack``).
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from ros2_ttvos.data.multi_benchmark import make_benchmark
from ros2_ttvos.data.pack import write_pack

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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "pack":
            names = [line.strip() for line in args.train_list.read_text().splitlines() if line.strip()]
            description = write_pack(args.davis.expanduser(), names, args.saliency, args.out, args.shard_mib)
            print(
                f"DAVIS {len(names)} sequences {description['davis_mib']} MiB; {description['stills']} stills in "
                f"{description['still_shards']} shards of {min(description['still_shard_mib'])}-"
                f"{max(description['still_shard_mib'])} MiB -> {args.out}"
            )
            return 0
        description = make_benchmark(args.davis.expanduser(), args.sequences, args.out, args.seed, args.variants)
    except (ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    targets = sum(s["targets"] for s in description["sequences"])
    print(f"{len(description['sequences'])} sequences, {targets} targets -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
