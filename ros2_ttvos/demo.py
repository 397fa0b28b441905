"""``ttvos-demo``: track the bundled sample clip offline and write an overlay video."""

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis, DavisSequence
from ros2_ttvos.tracker import Tracker
from ros2_ttvos.visualize import VideoWriter, overlay

SAMPLE_ROOT = Path(__file__).resolve().parent / "sample_data"
SAMPLE_SEQUENCE = "car-shadow"


def sample_clip() -> DavisSequence:
    """The bundled DAVIS clip (a one-sequence DAVIS folder inside the package)."""
    return Davis(SAMPLE_ROOT, 2016, "val").sequence(SAMPLE_SEQUENCE)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-demo", description=__doc__)
    parser.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--internal-size", type=int, default=480, help="processing short side")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    tracker = Tracker.from_pretrained(args.weights, device=args.device, internal_size=args.internal_size)
    clip = sample_clip()
    first = clip.image(0)
    tracker.add_objects(first, clip.mask(0))
    predictions, truths, times = [clip.mask(0)], [clip.mask(0)], []
    video = args.out / "overlay.mp4"
    with VideoWriter(video, fps=10) as writer:
        writer.write(overlay(first, clip.mask(0)))
        for index in range(1, len(clip)):
            image = clip.image(index)
            start = time.perf_counter()
            result = tracker.step(image)
            times.append(time.perf_counter() - start)
            confidences = " ".join(f"object {k}: {v:.3f}" for k, v in result.confidences.items())
            print(f"frame {index:3d}  {times[-1] * 1000:6.1f} ms  {confidences}")
            predictions.append(result.labels)
            truths.append(clip.mask(index))
            writer.write(overlay(image, result.labels, result.confidences))
    scores = metrics.sequence_scores(np.stack(predictions), np.stack(truths))[1]
    summary = {
        "J": scores.J_stats.mean,
        "F": scores.F_stats.mean,
        "JF": (scores.J_stats.mean + scores.F_stats.mean) / 2,
        "median_ms": float(np.median(times) * 1000),
        "fps": float(1.0 / np.median(times)),
        "device": str(tracker.device),
        "frames": len(clip),
        "overlay": str(video),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\n{SAMPLE_SEQUENCE}: J&F {100 * summary['JF']:.1f}  (J {100 * summary['J']:.1f}, "
        f"F {100 * summary['F']:.1f})  {summary['fps']:.1f} FPS ({summary['median_ms']:.0f} ms median) "
        f"on {summary['device']}\noverlay video: {video}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
