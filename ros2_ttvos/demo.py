"""``ttvos-demo`` (``make demo``): the node tracking the bundled clip, as a robot would use it.

Starts ``ttvos_node`` (shipped weights) as a real process on a private DDS domain, publishes the
bundled DAVIS clip as a camera would, calls ``set_targets`` with the first frame's mask, prints
each frame's confidences as they arrive, and closes with J&F against the clip's masks, output rate,
latency and drops. Writes ``OUT/overlay.mp4`` and ``OUT/summary.json``.
``--offline`` runs the same clip through the ``Tracker`` library without ROS.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis, DavisSequence
from ros2_ttvos.prompt_crops import interior_point, mask_box
from ros2_ttvos.visualize import VideoWriter, overlay

SAMPLE_ROOT = Path(__file__).resolve().parent / "sample_data"
SAMPLE_SEQUENCE = "car-shadow"


def sample_clip() -> DavisSequence:
    """The bundled DAVIS clip (a one-sequence DAVIS folder inside the package)."""
    return Davis(SAMPLE_ROOT, 2016, "val").sequence(SAMPLE_SEQUENCE)


def first_prompt(args, mask: np.ndarray):
    """(boxes, clicks) for the object of the first frame's ``mask``: its bounding box, as a
    detector would give it (``--box``), or one click in its interior, as a person would (``--click``)."""
    if args.click:
        return None, {1: [(*interior_point(mask > 0), True)]}
    return {1: mask_box(mask > 0)}, None


def run_offline(args, clip: DavisSequence) -> Dict:
    from ros2_ttvos.tracker import Tracker

    tracker = Tracker.from_pretrained(args.weights, args.device, args.backend, internal_size=args.internal_size)
    first = clip.mask(0)
    if args.box or args.click:
        first = tracker.prompt_mask(clip.image(0), *first_prompt(args, first))
    tracker.add_objects(clip.image(0), first)
    labels, confidences, times = [first], [{1: 1.0}], []
    for index in range(1, len(clip)):
        start = time.perf_counter()
        result = tracker.step(clip.image(index))
        times.append(time.perf_counter() - start)
        labels.append(result.labels)
        confidences.append(result.confidences)
        report_frame(index, result.confidences, times[-1])
    device = f"{tracker.backend.name} on {tracker.device}"
    return {"labels": labels, "confidences": confidences, "latency_s": times, "device": device}


def run_node(args, clip: DavisSequence) -> Dict:
    import rclpy

    from ros2_ttvos.ros import conversions, harness

    env = harness.ros_environment()
    harness.use_environment(env)
    parameters = {
        "internal_size": args.internal_size, "device": args.device, "backend": args.backend,
        "process_every_frame": True,
    }  # fmt: skip
    if args.weights:
        parameters["weights"] = args.weights
    node = harness.NodeProcess(env, parameters, args.out / "node.log")
    rclpy.init()
    client = harness.Client()
    try:
        client.wait_for_node(node)
        stamps = [harness.SECOND + round(i * harness.SECOND / args.rate) for i in range(len(clip))]
        client.publish(clip.image(0), stamps[0])
        client.wait_for_masks(1)
        if args.box or args.click:
            boxes, clicks = first_prompt(args, clip.mask(0))
            request = client.targets_request(None, stamps[0], boxes=boxes, clicks=clicks)
        else:
            request = client.targets_request(clip.mask(0), stamps[0])
        response = client.call(client.set_targets, request)
        if not response.success:
            raise RuntimeError(f"set_targets failed: {response.message}")
        print(f"set_targets: {response.message}")
        sent: List[float] = []
        for index in range(1, len(clip)):
            image = clip.image(index)
            time.sleep(max(0.0, (sent[-1] + 1.0 / args.rate - time.monotonic()) if sent else 0.0))
            sent.append(time.monotonic())
            client.publish(image, stamps[index])
        client.wait_for_masks(len(clip), timeout=600)
        by_stamp = {harness.stamp_ns(m.header): m for m in client.masks}
        objects = {harness.stamp_ns(o.header): o for o in client.objects}
        arrival = dict(zip((harness.stamp_ns(m.header) for m in client.masks),
                           client.received_at, strict=True))  # fmt: skip
        labels, confidences, latency = [clip.mask(0)], [{1: 1.0}], []
        for index, stamp in enumerate(stamps[1:], start=1):
            labels.append(conversions.image_to_labels(by_stamp[stamp]))
            confidences.append({o.id: o.confidence for o in objects[stamp].objects} if stamp in objects else {})
            latency.append(arrival[stamp] - sent[index - 1])
            report_frame(index, confidences[-1], latency[-1])
        span = client.received_at[-1] - sent[0]
        return {
            "labels": labels,
            "confidences": confidences,
            "latency_s": latency,
            "output_hz": (len(clip) - 1) / span,
            "dropped": len(clip) - len(by_stamp),
            "device": f"backend {args.backend}, device {args.device}",
        }
    finally:
        client.close()
        rclpy.try_shutdown()
        node.stop()


def report_frame(index: int, confidences: Dict[int, float], seconds: float) -> None:
    text = "  ".join(f"object {k}: {v:.3f}" for k, v in confidences.items()) or "no objects"
    print(f"frame {index:3d}  {1000 * seconds:7.1f} ms  {text}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"))
    parser.add_argument("--internal-size", type=int, default=480, help="processing short side (px)")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate (Hz) at which frames are published")
    parser.add_argument("--offline", action="store_true", help="use the Tracker library directly, without ROS")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--box", action="store_true", help="start from the first frame's bounding box, not its mask")
    prompt.add_argument("--click", action="store_true", help="start from one click inside the object, not its mask")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    clip = sample_clip()
    try:
        run = run_offline(args, clip) if args.offline else run_node(args, clip)
    except (RuntimeError, TimeoutError, ValueError, OSError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    video = args.out / "overlay.mp4"
    with VideoWriter(video, fps=args.rate) as writer:
        for index, (labels, confidences) in enumerate(zip(run["labels"], run["confidences"], strict=True)):
            writer.write(overlay(clip.image(index), labels, confidences))
    truth = np.stack([clip.mask(i) for i in range(len(clip))])
    scores = metrics.sequence_scores(np.stack(run["labels"]), truth)[1]
    latency_ms = 1000 * np.array(run["latency_s"])
    summary = {
        "mode": "offline Tracker" if args.offline else "ttvos_node over DDS",
        "J": scores.J_stats.mean,
        "F": scores.F_stats.mean,
        "JF": (scores.J_stats.mean + scores.F_stats.mean) / 2,
        "frames": len(clip),
        "latency_ms_p50": float(np.percentile(latency_ms, 50)),
        "latency_ms_p95": float(np.percentile(latency_ms, 95)),
        "fps": run.get("output_hz", 1000 / float(np.median(latency_ms))),
        "dropped": run.get("dropped", 0),
        "device": run["device"],
        "overlay": str(video),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\n{SAMPLE_SEQUENCE} ({summary['mode']}): J&F {100 * summary['JF']:.1f} (J {100 * summary['J']:.1f}, "
        f"F {100 * summary['F']:.1f}), {summary['fps']:.1f} FPS, latency p50 {summary['latency_ms_p50']:.0f} ms "
        f"p95 {summary['latency_ms_p95']:.0f} ms, {summary['dropped']} dropped\noverlay video: {video}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
