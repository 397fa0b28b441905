"""``ttvos-bench --ros``: the node end to end over DDS, against the tracker alone with the node's
settings on the same frames, for 1, 2 and 4 objects; ``--soak N``: a long stream through the node.

Targets (issue: the node at camera rate): masks out >= 0.9 x min(rate in, tracker FPS) and p95
latency <= 1.5 x the tracker's p95 step + 15 ms. Each row says whether it meets them.
"""

import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ros2_ttvos.bench_inputs import clip_frames, object_masks
from ros2_ttvos.ros import harness
from ros2_ttvos.tracker import Tracker

INPUT = (480, 854)
OBJECT_COUNTS = (1, 2, 4)
RATES = (15.0, 30.0)
SOAK_SAMPLE_EVERY = 1000  # frames between RSS samples


def tracker_alone(images, objects: int, settings: Dict, frames: int = 40) -> Dict[str, float]:
    """Step times of a Tracker built as the node builds it (same backend, precision, size, threads)."""
    tracker = Tracker.from_pretrained(
        settings.get("weights"), "auto", settings["backend"], threads=None, internal_size=settings["internal_size"]
    )
    tracker.add_objects(images[0], object_masks(INPUT, objects))
    times = []
    for index in range(5 + frames):
        start = time.perf_counter()
        tracker.step(images[1 + index % (len(images) - 1)])
        times.append(time.perf_counter() - start)
    timed = np.array(times[5:]) * 1000
    tracker.close()
    return {"step_ms_p50": float(np.median(timed)), "step_ms_p95": float(np.percentile(timed, 95)),
            "fps": float(1000 / np.median(timed)), "backend": tracker.backend.name,
            "precision": getattr(tracker.backend, "precision", "fp32")}  # fmt: skip


def _start(settings: Dict, every_frame: bool, log_name: str):
    import rclpy

    env = harness.ros_environment()
    harness.use_environment(env)
    parameters = {"internal_size": settings["internal_size"], "process_every_frame": every_frame,
                  "backend": settings["backend"]}  # fmt: skip
    if settings.get("weights"):
        parameters["weights"] = str(settings["weights"])
    node = harness.NodeProcess(env, parameters, Path("bench") / log_name)
    rclpy.init()
    client = harness.Client()
    client.wait_for_node(node)
    return node, client


def _stop(node, client) -> None:
    import rclpy

    client.close()
    rclpy.try_shutdown()
    node.stop()


def _first_mask(client, node, image, stamp) -> None:
    deadline = time.monotonic() + 60
    while not client.masks:  # best-effort input: the first frames may go before the path is up
        if time.monotonic() > deadline:
            raise TimeoutError(f"no mask from the node within 60 s; see {node.log_path}")
        client.publish(image, stamp)
        time.sleep(0.5)


def _targets(client, image, stamp, objects: int) -> None:
    request = client.targets_request(object_masks(INPUT, objects), stamp, replace=True, image=image)
    response = client.call(client.set_targets, request)
    if not response.success:
        raise RuntimeError(f"set_targets failed: {response.message}")


def node_streams(settings: Dict, seconds: float) -> List[Dict]:
    """For each object count: the tracker alone, then the live-mode node at each rate."""
    images = clip_frames(INPUT)
    alone = {n: tracker_alone(images, n, settings) for n in OBJECT_COUNTS}
    node, client = _start(settings, every_frame=False, log_name="node.log")
    rows = []
    try:
        stamp = harness.SECOND
        _first_mask(client, node, images[0], stamp)
        for objects in OBJECT_COUNTS:
            _targets(client, images[0], stamp, objects)
            for rate in RATES:
                time.sleep(1.0)
                client.masks.clear()
                client.received_at.clear()
                sent: Dict[int, float] = {}
                start = time.monotonic()
                index = 0
                while time.monotonic() - start < seconds:
                    stamp += 1_000_000
                    client.publish(images[1 + index % (len(images) - 1)], stamp)
                    sent[stamp] = time.monotonic()
                    index += 1
                    time.sleep(max(0.0, start + index / rate - time.monotonic()))
                time.sleep(2.0)  # let the last frame through
                received = {harness.stamp_ns(m.header): t
                            for m, t in zip(client.masks, client.received_at, strict=True)}  # fmt: skip
                latency = [1000 * (t - sent[s]) for s, t in received.items() if s in sent]
                tracker = alone[objects]
                row = {
                    "objects": objects, "rate_hz": rate, "published": len(sent), "received": len(latency),
                    "output_hz": len(latency) / seconds, "drop_rate": 1 - len(latency) / len(sent),
                    "latency_ms_p50": float(np.percentile(latency, 50)),
                    "latency_ms_p95": float(np.percentile(latency, 95)),
                    "tracker_fps": tracker["fps"], "tracker_step_ms_p95": tracker["step_ms_p95"],
                    "backend": tracker["backend"], "precision": tracker["precision"],
                }  # fmt: skip
                row["output_vs_tracker"] = row["output_hz"] / min(rate, tracker["fps"])
                row["meets_rate"] = row["output_vs_tracker"] >= 0.9
                row["meets_latency"] = row["latency_ms_p95"] <= 1.5 * tracker["step_ms_p95"] + 15
                rows.append(row)
    finally:
        _stop(node, client)
    return rows


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def soak(settings: Dict, frames: int, rate: float, every_frame: bool) -> Dict:
    """Stream ``frames`` frames at ``rate`` (live mode) or each after the previous mask
    (every-frame mode) through a fresh node tracking 2 objects; RSS every 1,000 frames."""
    images = clip_frames(INPUT)
    node, client = _start(settings, every_frame, log_name=f"soak-{'every' if every_frame else 'live'}.log")
    samples: List[Dict] = []
    try:
        stamp = harness.SECOND
        _first_mask(client, node, images[0], stamp)
        _targets(client, images[0], stamp, 2)
        client.masks.clear()
        client.received_at.clear()
        trimmed = 0  # masks received and let go (the client keeps every mask it gets)
        start = time.monotonic()
        for index in range(frames):
            stamp += 1_000_000
            client.publish(images[1 + index % (len(images) - 1)], stamp)
            if every_frame:
                client.wait_for_masks(index + 1 - trimmed, timeout=60)
            else:
                time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
            if (index + 1) % SOAK_SAMPLE_EVERY == 0 or index == 0:
                samples.append({"frame": index + 1, "rss_mb": round(_rss_mb(node.process.pid), 1)})
            if len(client.masks) > 2 * SOAK_SAMPLE_EVERY:
                trimmed += SOAK_SAMPLE_EVERY
                del client.masks[:SOAK_SAMPLE_EVERY], client.received_at[:SOAK_SAMPLE_EVERY]
        time.sleep(2.0)
        answered = trimmed + len(client.masks)
        alive = node.alive()
    finally:
        _stop(node, client)
    rss = [s["rss_mb"] for s in samples[1:]] or [samples[0]["rss_mb"]]
    return {
        "mode": "every frame" if every_frame else f"live at {rate:.0f} Hz", "frames": frames, "answered": answered,
        "node_alive_at_end": alive, "rss_samples": samples, "rss_spread_mb": round(max(rss) - min(rss), 1),
        "seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip


def print_streams(rows: List[Dict]) -> None:
    print(
        f"\n{'objects':>7} {'rate':>5} {'out Hz':>7} {'drop':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'tracker FPS':>11} {'tracker p95':>11} {'out/min(rate,tracker)':>22} {'latency target':>15}"
    )
    for r in rows:
        target = 1.5 * r["tracker_step_ms_p95"] + 15
        print(
            f"{r['objects']:>7} {r['rate_hz']:>5.0f} {r['output_hz']:>7.2f} {100 * r['drop_rate']:>5.1f}% "
            f"{r['latency_ms_p50']:>7.1f} {r['latency_ms_p95']:>7.1f} {r['tracker_fps']:>11.2f} "
            f"{r['tracker_step_ms_p95']:>11.1f} {r['output_vs_tracker']:>17.2f} {'ok' if r['meets_rate'] else 'NO':>4} "
            f"{target:>10.1f} {'ok' if r['meets_latency'] else 'NO':>4}"
        )


def settings_from(args) -> Dict:
    return {"internal_size": args.internal_size, "backend": args.ros_backend, "weights": args.weights}


def main_streams(args, seconds: Optional[float] = None) -> List[Dict]:
    rows = node_streams(settings_from(args), seconds or args.ros_seconds)
    print_streams(rows)
    return rows
