"""``ttvos-bag``: DAVIS sequences to ROS 2 bags, and bags through the node to a J&F / latency report.

    ttvos-bag from-davis --davis ../shared/data/DAVIS --sequence blackswan [--rate 30]
                         [--format mcap|sqlite3] [--compressed] [--separate] --out BAG
    ttvos-bag eval --bag BAG [--image-topic image] [--gt-topic ground_truth/masks]
                   [--every-frame | --realtime] [--rate-scale 1.0] [--node NAME]
                   [--targets-file MASK.png | --targets-box X0,Y0,X1,Y1 ... --targets-click X,Y ...]
                   [--targets-frame N] --out DIR

``eval`` starts ``ttvos_node`` (or uses a running one with ``--node``), plays the bag through
rclpy with its timing and ``/clock``, calls ``set_targets`` with each object's first
ground-truth mask, records the node's outputs into DIR/outputs (an MCAP bag) and writes
DIR/report.json, DIR/report.md, plots and an overlay video. ``--every-frame`` runs the node in
process_every_frame mode and paces the bag to it (each frame waits for the previous mask), so its
J&F equals ``ttvos-eval``; ``--realtime`` keeps the recorded timing and scores each frame with the
latest mask the node had published by then, as a live robot would see it.
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ros2_ttvos.ros.bag_io import (
    IMAGE_TYPES,
    BagError,
    BagFrames,
    message_class,
    read_bag,
    write_davis_bag,
    write_outputs_bag,
)
from ros2_ttvos.ros.harness import SECOND, stamp_ns


@dataclass
class Prompts:
    """Boxes {id: (x0, y0, x1, y1)} and clicks {id: [(x, y, positive)]} given on one frame."""

    boxes: Dict[int, Tuple[int, int, int, int]]
    clicks: Dict[int, List[Tuple[float, float, bool]]]


@dataclass
class Playback:
    """What the node published for a played bag."""

    outputs: Dict[int, np.ndarray]  # stamp -> labels
    confidences: Dict[int, Dict[int, float]]
    sent_at: Dict[int, float]  # stamp -> time.monotonic() of publishing
    received_at: Dict[int, float]
    given: Dict[int, np.ndarray]  # stamp -> labels of the objects given by set_targets on that frame


def segments(frames: BagFrames, gap_seconds: float) -> List[List[int]]:
    """Frame indices split where the stamps jump by more than ``gap_seconds`` (a new recording)."""
    stamps = [stamp for _, stamp, _ in frames.images]
    parts, current = [], [0]
    for index in range(1, len(stamps)):
        if stamps[index] - stamps[index - 1] > gap_seconds * SECOND:
            parts.append(current)
            current = []
        current.append(index)
    parts.append(current)
    return parts


def play(
    client, frames: BagFrames, parts: List[List[int]], targets: Dict[int, np.ndarray], every_frame: bool,
    rate_scale: float, answer_timeout: float,
) -> Playback:  # fmt: skip
    """Publish the bag's frames (and /clock) with ``client`` (its image publisher matches the bag's
    image type), give targets when they first appear in a segment
    (the first of a segment replaces all objects), and collect what the node publishes."""
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    from ros2_ttvos.ros import conversions

    clock_pub = client.node.create_publisher(Clock, "/clock", 10)
    msg_class = message_class(frames.msgtype)
    to_rgb = conversions.compressed_to_rgb if frames.msgtype == IMAGE_TYPES[1] else conversions.image_to_rgb
    given: Dict[int, np.ndarray] = {}
    sent_at: Dict[int, float] = {}
    start_wall = time.monotonic()
    start_bag = frames.images[0][0]
    published = 0
    for part in parts:
        seen: set = set()
        for index in part:
            bag_time, stamp, raw = frames.images[index]
            if not every_frame:
                due = start_wall + (bag_time - start_bag) / SECOND / rate_scale
                time.sleep(max(0.0, due - time.monotonic()))
            clock = Clock()
            clock.clock.sec, clock.clock.nanosec = divmod(bag_time, SECOND)
            clock_pub.publish(clock)
            sent_at[stamp] = time.monotonic()
            message = deserialize_message(raw, msg_class)
            client.image_pub.publish(message)
            published += 1
            if every_frame:
                client.wait_for_masks(published, timeout=answer_timeout)
            labels = targets.get(stamp)
            if isinstance(labels, Prompts):  # the node makes their masks
                request = client.targets_request(
                    None, stamp, replace=not seen, image=to_rgb(message), boxes=labels.boxes, clicks=labels.clicks
                )
                response = client.call(client.set_targets, request, timeout=answer_timeout)
                if not response.success:
                    raise BagError(f"set_targets with boxes or clicks on frame {index} failed: {response.message}")
                seen.update(labels.boxes, labels.clicks)
                continue
            new_ids = [] if labels is None else [int(v) for v in np.unique(labels) if v and int(v) not in seen]
            if new_ids:
                mask = np.where(np.isin(labels, new_ids), labels, 0).astype(np.uint8)
                # The frame goes with the request: the node need not have received it yet.
                request = client.targets_request(mask, stamp, replace=not seen, image=to_rgb(message))
                response = client.call(client.set_targets, request, timeout=answer_timeout)
                if not response.success:
                    raise BagError(f"set_targets on frame {index} failed: {response.message}")
                seen.update(new_ids)
                given[stamp] = mask
    if not every_frame:
        time.sleep(2.0)  # the last frames' masks
    outputs, received_at = {}, {}
    for msg, arrival in zip(list(client.masks), list(client.received_at), strict=True):
        outputs[stamp_ns(msg.header)] = conversions.image_to_labels(msg)
        received_at[stamp_ns(msg.header)] = arrival
    confidences = {stamp_ns(m.header): {o.id: o.confidence for o in m.objects} for m in list(client.objects)}
    return Playback(outputs, confidences, sent_at, received_at, given)


def frame_labels(frames: BagFrames, playback: Playback) -> List[np.ndarray]:
    """Labels per bag frame: the node's output for it, else (dropped) its latest earlier output;
    objects given on a frame are that frame's labels for them, as in ttvos-eval."""
    labels: List[Optional[np.ndarray]] = []
    last = None
    for _, stamp, _ in frames.images:
        if stamp in playback.outputs:
            last = playback.outputs[stamp]
        current = last
        given = playback.given.get(stamp)
        if given is not None:
            current = np.where(given > 0, given, 0 if current is None else current).astype(np.uint8)
        labels.append(current)
    shape = next(x.shape for x in labels if x is not None)
    return [x if x is not None else np.zeros(shape, np.uint8) for x in labels]


def score(frames: BagFrames, parts: List[List[int]], labels: List[np.ndarray]) -> Dict:
    """Official J and F per segment and object, on the frames that have ground truth."""
    from ros2_ttvos import metrics
    from ros2_ttvos.evaluate import summarise

    per_object, all_scores, all_failures = [], [], []
    for number, part in enumerate(parts):
        scored = [i for i in part if frames.images[i][1] in frames.truth]
        if len(scored) < 3:
            continue
        truth = np.stack([frames.truth[frames.images[i][1]] for i in scored])
        predicted = np.stack([labels[i] for i in scored])
        scores = metrics.sequence_scores(predicted, truth)
        failures = metrics.frame_failures(predicted, truth)
        all_scores.append(scores)
        all_failures.append(failures)
        for object_id, s in scores.items():
            per_object.append({
                "segment": number, "object": object_id, "frames": len(scored),
                **failures[object_id].columns(),
                "J": s.J_stats.mean, "F": s.F_stats.mean, "JF": (s.J_stats.mean + s.F_stats.mean) / 2,
                "J_per_frame": s.J.tolist(),
            })  # fmt: skip
    return {"objects": per_object, "overall": summarise(all_scores, all_failures) if all_scores else None}


def write_report(out: Path, report: Dict, frames: BagFrames, labels: List[np.ndarray], playback: Playback) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rclpy.serialization import deserialize_message

    from ros2_ttvos.ros import conversions
    from ros2_ttvos.visualize import VideoWriter, overlay

    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"# ttvos-bag eval: {report['bag']}", "", f"mode: {report['mode']}", ""]
    if report["scores"]["overall"]:
        o = report["scores"]["overall"]
        lines += [f"J&F {100 * o['JF_mean']:.2f}, J {100 * o['J_mean']:.2f}, F {100 * o['F_mean']:.2f}", ""]
        lines += ["| segment | object | frames | J | F | J&F |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['segment']} | {r['object']} | {r['frames']} | {100 * r['J']:.1f} | {100 * r['F']:.1f} | "
                  f"{100 * r['JF']:.1f} |" for r in report["scores"]["objects"]]  # fmt: skip
    else:
        lines += ["no ground truth: timing only", ""]
    t = report["timing"]
    lines += ["", f"frames in {t['frames_in']}, out {t['frames_out']}, dropped {t['dropped']}; "
              f"{t['fps']:.2f} FPS; latency p50 {t['latency_ms_p50']:.1f} ms, p95 {t['latency_ms_p95']:.1f} ms, "
              f"p99 {t['latency_ms_p99']:.1f} ms"]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines) + "\n")
    fig, (ax_j, ax_lat) = plt.subplots(1, 2, figsize=(12, 4))
    for r in report["scores"]["objects"]:
        ax_j.plot(r["J_per_frame"], label=f"segment {r['segment']} object {r['object']}")
    ax_j.set(xlabel="evaluated frame", ylabel="J", title="region similarity per frame", ylim=(0, 1))
    if report["scores"]["objects"]:
        ax_j.legend(fontsize=7)
    ax_lat.hist(report["timing"]["latency_ms"], bins=30)
    ax_lat.set(xlabel="latency (ms): image published to mask received", ylabel="frames", title="latency")
    fig.tight_layout()
    fig.savefig(out / "plots.png", dpi=100)
    plt.close(fig)
    msg_class = message_class(frames.msgtype)
    to_rgb = conversions.compressed_to_rgb if frames.msgtype == IMAGE_TYPES[1] else conversions.image_to_rgb
    with VideoWriter(out / "overlay.mp4", fps=15) as video:
        for (_, stamp, raw), frame_labels_ in zip(frames.images, labels, strict=True):
            rgb = to_rgb(deserialize_message(raw, msg_class))
            video.write(overlay(rgb, frame_labels_, playback.confidences.get(stamp)))


def output_rate(playback: Playback) -> float:
    """Masks per second from the first frame sent to the last mask received."""
    span = max(playback.received_at.values()) - min(playback.sent_at.values())
    return len(playback.outputs) / span if span > 0 else float("nan")


def _click_argument(text: str) -> Tuple[float, float, bool]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a click is X,Y in pixels, got {text!r}") from error
    return x, y, True


def _box_argument(text: str) -> Tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a box is X0,Y0,X1,Y1 in pixels, got {text!r}") from error
    return x0, y0, x1, y1


def evaluate_bag(args) -> Dict:
    import rclpy

    from ros2_ttvos.data.davis import read_mask
    from ros2_ttvos.ros import harness

    frames = read_bag(args.bag, args.image_topic, args.gt_topic)
    parts = segments(frames, args.segment_gap)
    targets = dict(frames.truth)
    if args.targets_file or args.targets_box or args.targets_click:
        if not 0 <= args.targets_frame < len(frames.images):
            raise BagError(f"--targets-frame {args.targets_frame} outside the bag's {len(frames.images)} frames")
        stamp = frames.images[args.targets_frame][1]
        if args.targets_file and (args.targets_box or args.targets_click):
            raise BagError("--targets-file excludes --targets-box and --targets-click")
        if args.targets_file:
            targets = {stamp: read_mask(args.targets_file, binary=False)}
        else:  # objects 1, 2, ... in the order given: the boxes, then the clicks
            boxes = {index + 1: box for index, box in enumerate(args.targets_box or [])}
            clicks = {len(boxes) + index + 1: [click] for index, click in enumerate(args.targets_click or [])}
            targets = {stamp: Prompts(boxes, clicks)}
    if not targets:
        print(
            f"no ground truth on {args.gt_topic} and no --targets-file, --targets-box or --targets-click: timing only"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    env = harness.ros_environment()
    harness.use_environment(env)
    node = None
    if args.node is None:
        parameters = {
            "process_every_frame": args.every_frame, "use_sim_time": True, "internal_size": args.internal_size,
            "device": args.device, "backend": args.backend, "frame_buffer": 120, "queue_size": 100,
            "image_transport": "compressed" if frames.msgtype == IMAGE_TYPES[1] else "raw",
        }  # fmt: skip
        if args.weights:
            parameters["weights"] = str(args.weights)
        node = harness.NodeProcess(env, parameters, args.out / "node.log")
    rclpy.init()
    client = harness.Client(node_name=args.node or "ttvos", compressed=frames.msgtype == IMAGE_TYPES[1])
    try:
        client.wait_for_node(node, timeout=args.timeout)
        playback = play(client, frames, parts, targets, args.every_frame, args.rate_scale, args.timeout)
        write_outputs_bag(client, args.out / "outputs")
    finally:
        client.close()
        rclpy.try_shutdown()
        if node is not None:
            node.stop()
    if not playback.outputs:
        raise BagError(f"the node published no mask for {len(frames.images)} frames; see {args.out / 'node.log'}")
    labels = frame_labels(frames, playback)
    latency = [1000 * (playback.received_at[s] - playback.sent_at[s]) for s in playback.received_at
               if s in playback.sent_at]  # fmt: skip
    report = {
        "bag": str(args.bag),
        "mode": "every frame" if args.every_frame else f"realtime x{args.rate_scale}",
        "scores": score(frames, parts, labels) if frames.truth else {"objects": [], "overall": None},
        "timing": {
            "frames_in": len(frames.images), "frames_out": len(playback.outputs),
            "dropped": len(frames.images) - len(playback.outputs), "fps": output_rate(playback),
            "latency_ms_p50": float(np.percentile(latency, 50)), "latency_ms_p95": float(np.percentile(latency, 95)),
            "latency_ms_p99": float(np.percentile(latency, 99)), "latency_ms": latency,
        },
    }  # fmt: skip
    write_report(args.out, report, frames, labels, playback)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-bag", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("from-davis", help="write DAVIS sequences into a ROS 2 bag")
    make.add_argument("--davis", type=Path, required=True)
    make.add_argument("--sequence", required=True, help="a sequence, or several separated by commas")
    make.add_argument("--year", type=int, default=2016)
    make.add_argument("--split", default="val")
    make.add_argument("--resolution", default="480p")
    make.add_argument("--rate", type=float, default=30.0, help="frame rate of the stamps (Hz)")
    make.add_argument("--format", choices=("mcap", "sqlite3"), default="mcap")
    make.add_argument("--compressed", action="store_true", help="image as a jpeg CompressedImage")
    make.add_argument("--separate", action="store_true", help="one bag per sequence under --out")
    make.add_argument("--out", type=Path, required=True)
    ev = commands.add_parser("eval", help="play a bag through the node and report J&F and latency")
    ev.add_argument("--bag", type=Path, required=True)
    ev.add_argument("--image-topic", default="image")
    ev.add_argument("--gt-topic", default="ground_truth/masks")
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument("--every-frame", dest="every_frame", action="store_true", default=True)
    mode.add_argument("--realtime", dest="every_frame", action="store_false")
    ev.add_argument("--rate-scale", type=float, default=1.0, help="playback speed in --realtime")
    ev.add_argument("--node", help="use this running node instead of starting one")
    ev.add_argument("--targets-file", type=Path, help="label PNG to track from (bags without ground truth)")
    ev.add_argument(
        "--targets-box", type=_box_argument, action="append", metavar="X0,Y0,X1,Y1",
        help="a box to track from (objects 1, 2, ... in order; repeatable), instead of a mask",
    )  # fmt: skip
    ev.add_argument(
        "--targets-click", type=_click_argument, action="append", metavar="X,Y",
        help="a click on an object to track (one object per click, numbered after the boxes; box head)",
    )  # fmt: skip
    ev.add_argument("--targets-frame", type=int, default=0, help="frame index the targets belong to")
    ev.add_argument("--segment-gap", type=float, default=0.5, help="a stamp gap (s) that starts a new segment")
    ev.add_argument("--weights", type=Path)
    ev.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"))
    ev.add_argument("--device", default="auto")
    ev.add_argument("--internal-size", type=int, default=480)
    ev.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the node")
    ev.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "from-davis":
            names = [s for s in args.sequence.split(",") if s]
            outs = [(args.out / n, [n]) for n in names] if args.separate else [(args.out, names)]
            for path, sequences in outs:
                counts = write_davis_bag(args.davis, sequences, path, args.rate, args.format, args.compressed,
                                         args.year, args.split, args.resolution)  # fmt: skip
                print(f"wrote {path}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
            return 0
        report = evaluate_bag(args)
    except (BagError, ValueError, OSError, TimeoutError, RuntimeError) as error:
        print(f"ttvos-bag failed: {error}", file=sys.stderr)
        return 1
    overall, timing = report["scores"]["overall"], report["timing"]
    text = (
        f"J&F {100 * overall['JF_mean']:.2f} (J {100 * overall['J_mean']:.2f}, F {100 * overall['F_mean']:.2f}); "
        if overall
        else ""
    )
    print(
        f"{text}{timing['frames_out']}/{timing['frames_in']} frames, {timing['fps']:.2f} FPS, latency p50 "
        f"{timing['latency_ms_p50']:.1f} ms p95 {timing['latency_ms_p95']:.1f} ms -> {args.out / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
