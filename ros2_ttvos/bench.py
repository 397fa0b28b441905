"""``ttvos-bench``: speed, memory and size of the Tracker, printed and written to bench/results.json.

    ttvos-bench [--weights W] [--device auto] [--frames 50] [--memory-frames 1000] [--out bench/results.json]
    ttvos-bench --model-info          # parameter count and GFLOPs per frame only
    ttvos-bench --ros                 # the node over DDS at 15 and 30 Hz, 1/2/4 objects, against the tracker alone
    ttvos-bench --ros --soak 10000    # a long stream through the node, live and every-frame: RSS, answers
    ttvos-bench --metrics DAVIS_ROOT  # time to score every frame of DAVIS16 val (one core)
    ttvos-bench --width-sweep         # 4-vs-1-object cost of narrower per-object layers (OpenVINO)
    ttvos-bench --compare CKPT ...    # other weights (a stronger backbone) beside the shipped ones (OpenVINO)
    ttvos-bench --region-cost         # the step with and without its search region (torch)

Speed: median ms of ``Tracker.step`` (image in, labels out) at 480x854 and 240x427 input, each
processed at its own short side, for 1, 2 and 4 objects (one tracker each, stepped in turns on the
same frames), after warm-up; threads = cores; for the torch backend and, side by side in the same
run, the ONNX Runtime and OpenVINO backends (fp32, on an export made on the fly; OpenVINO in bf16
too where the CPU has bf16 units), with the 4-vs-1-object and backend speed-up ratios. With
``--device cuda``: torch on CUDA in fp32 and fp16, torch on the CPU, and ONNX Runtime on CUDA when
its CUDA provider is installed (onnxruntime-gpu).
Width sweep: the same 4-vs-1-object timing (OpenVINO, 480x854) for copies of the network with
narrower per-object layers (``WIDTH_VARIANTS``; their changed layers untrained), to show how the
cost of a further object follows the widths.
Memory (measured first, before the speed runs load other backends): state bytes and RSS after
100 and after ``--memory-frames`` frames of one stream (torch backend).
Each mode updates its own section of the results file and leaves the others.
"""

import argparse
import copy
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ros2_ttvos.backends import OpenVinoBackend
from ros2_ttvos.bench_inputs import clip_frames, object_masks
from ros2_ttvos.bench_timing import OBJECT_COUNTS, SIZES, model_info, time_object_counts
from ros2_ttvos.evaluate import git_commit
from ros2_ttvos.export import export
from ros2_ttvos.tracker import Tracker


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_run(tracker: Tracker, shape, frames: int) -> Dict[str, float]:
    images = clip_frames(shape)
    tracker.reset()
    tracker.add_objects(images[0], object_masks(shape, 2))
    out = {"size": list(shape), "objects": 2}
    for index in range(1, frames + 1):
        tracker.step(images[1 + index % (len(images) - 1)])
        if index in (min(100, frames), frames):
            out[f"after_{index}"] = {
                "state_bytes": tracker.state_nbytes(),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_mb": round(current_rss_mb(), 1),
            }
    return out


def run_label(row: Dict) -> str:
    """The backend, with its precision when that is not fp32: 'torch', 'torch fp16'."""
    return row["backend"] if row["precision"] == "fp32" else f"{row['backend']} {row['precision']}"


def speed_ratios(rows: List[Dict]) -> Dict[str, float]:
    """4-object vs 1-object cost per backend and size, and each run's speed-up over fp32 torch."""
    ms = {(run_label(r), r["device"], tuple(r["input"]), r["objects"]): r["median_ms"] for r in rows}
    ratios = {}
    for label, device, shape, objects in ms:
        name = f"{label}/{device}/{shape[0]}x{shape[1]}"
        if objects == 4:
            ratios[f"{name}: 4 objects / 1 object"] = ms[(label, device, shape, 4)] / ms[(label, device, shape, 1)]
        if label != "torch" and ("torch", device, shape, objects) in ms:
            ratios[f"{name}/{objects} objects: speed-up over torch"] = (
                ms[("torch", device, shape, objects)] / ms[(label, device, shape, objects)]
            )
    return ratios


def metric_seconds(davis_root: Path) -> Dict[str, float]:
    """Seconds to compute J and F for every frame of DAVIS16 val (prediction: the previous frame's mask)."""
    import cv2

    from ros2_ttvos import metrics
    from ros2_ttvos.data.davis import Davis

    cv2.setNumThreads(1)
    truths = [np.stack([s.mask(i) for i in range(len(s))]) for s in Davis(davis_root, 2016, "val", "480p")]
    start = time.perf_counter()
    for truth in truths:
        metrics.sequence_scores(np.concatenate([truth[:1], truth[:-1]]), truth)
    return {"frames": sum(len(t) for t in truths), "seconds": time.perf_counter() - start}


def update_results(path: Path, section: Dict) -> None:
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(section)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {path}")


def train_speed(args) -> int:
    """``--train``: one training step per precision and layout, in turns; fp32 is the reference."""
    from ros2_ttvos import checkpoint
    from ros2_ttvos.backends import resolve_torch_device
    from ros2_ttvos.train_bench import default_cases, training_speed

    device = resolve_torch_device(args.device)
    model = checkpoint.build_model(checkpoint.load(args.weights or checkpoint.SHIPPED_WEIGHTS))
    rows = []
    for objects in (1, 2, 3):  # the run's clips hold 1 to 3 targets
        rows += training_speed(model, device, default_cases(device), objects=objects)
    print(
        f"\n{'device':7} {'precision':9} {'layout':13} {'blocks':>6} {'objects':>7} {'step s':>7} {'frames/s':>9} "
        f"{'vs fp32':>8}"
    )
    for row in rows:
        reference = next(
            r
            for r in rows
            if r["objects"] == row["objects"] and r["precision"] == "fp32" and not r["channels_last"]
            and r["trained_blocks"] == 1
        )  # fmt: skip
        row["speed_vs_fp32"] = round(row["frames_per_s"] / reference["frames_per_s"], 2)
        layout = "channels_last" if row["channels_last"] else "contiguous"
        print(
            f"{row['device']:7} {row['precision']:9} {layout:13} {row['trained_blocks']:>6} {row['objects']:>7} "
            f"{row['step_s']:>7.2f} {row['frames_per_s']:>9.2f} {row['speed_vs_fp32']:>7.2f}x"
        )
    update_results(args.out, {"train": {"git_commit": git_commit(), "threads": args.threads, "rows": rows}})
    return 0


def train_threads_speed(args) -> int:
    """``--train-threads``: the training step on 2 threads under each OpenMP wait policy, and on 1."""
    from ros2_ttvos.train_bench import thread_settings_speed

    rows = thread_settings_speed()
    print(f"\n{'round':>5} {'threads':>7} {'wait policy':12} {'precision':9} {'step s':>7} {'frames/s':>9}")
    for row in rows:
        print(
            f"{row['round']:>5} {row['threads']:>7} {row['wait_policy']:12} {row['precision']:9} "
            f"{row['step_s']:>7.2f} {row['frames_per_s']:>9.2f}"
        )
    update_results(args.out, {"train_threads": {"git_commit": git_commit(), "rows": rows}})
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--frames", type=int, default=50, help="frames per case after warm-up, taken in turns")
    parser.add_argument("--memory-frames", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: cores)")
    parser.add_argument("--model-info", action="store_true", help="print parameters and GFLOPs only")
    parser.add_argument(
        "--backends", type=lambda v: v.split(","), default=["torch", "onnxruntime", "openvino"], help="comma-separated"
    )
    parser.add_argument("--ros", action="store_true", help="end-to-end latency through DDS (the node)")
    parser.add_argument("--ros-seconds", type=float, default=20.0, help="stream length per rate in --ros")
    parser.add_argument(
        "--soak", type=int, metavar="N", help="with --ros: N frames through the node, live and every-frame"
    )
    parser.add_argument("--internal-size", type=int, default=480, help="node processing size in --ros")
    parser.add_argument("--ros-backend", default="auto", help="node backend in --ros")
    parser.add_argument("--metrics", type=Path, metavar="DAVIS_ROOT", help="time the J&F scoring of DAVIS16 val")
    parser.add_argument(
        "--width-sweep", action="store_true", help="4-vs-1-object cost of narrower per-object layers (OpenVINO)"
    )
    parser.add_argument(
        "--compare", type=Path, nargs="+", metavar="CHECKPOINT",
        help="OpenVINO step time of these checkpoints beside --weights (default: the shipped), in turns",
    )  # fmt: skip
    parser.add_argument(
        "--region-cost", action="store_true", help="step time with and without the search region (torch), in turns"
    )
    parser.add_argument(
        "--train", action="store_true", help="training frames/s per precision and layout (4 clips x 8 frames)"
    )
    parser.add_argument(
        "--train-threads", action="store_true", help="training frames/s on 2 threads per OpenMP wait policy, and 1"
    )
    parser.add_argument("--boxes", action="store_true", help="time to turn a box into a mask, per method")
    parser.add_argument("--prompt-davis", type=Path, metavar="DAVIS_ROOT", help="--boxes: also mask J on these frames")
    parser.add_argument("--prompt-split", default="train", help="--boxes: DAVIS16 split of --prompt-sequences")
    parser.add_argument(
        "--prompt-sequences", type=lambda s: [x for x in s.split(",") if x], default=["bmx-bumps", "hockey", "swing"],
        help="--boxes: sequences for mask J (default: the hold-out train sequences)",
    )  # fmt: skip
    parser.add_argument("--precision", default="auto", help="--boxes: tracker precision (auto, fp32, bf16, int8)")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        return train_speed(args)
    if args.train_threads:
        return train_threads_speed(args)
    if args.boxes:
        from ros2_ttvos.prompt_bench import prompt_speed

        return prompt_speed(args, update_results)
    if args.metrics:
        timing = metric_seconds(args.metrics)
        print(f"J and F of {timing['frames']} DAVIS16 val frames scored in {timing['seconds']:.1f} s (one core)")
        update_results(args.out, {"metrics_scoring": timing})
        return 0
    if args.ros:
        from ros2_ttvos.ros import node_bench

        if args.soak:
            runs = [node_bench.soak(node_bench.settings_from(args), args.soak, 30.0, every) for every in (False, True)]
            for run in runs:
                print(
                    f"soak {run['mode']}: {run['answered']} of {run['frames']} frames answered in {run['seconds']} s, "
                    f"node alive {run['node_alive_at_end']}, RSS {[s['rss_mb'] for s in run['rss_samples']]} MB "
                    f"(spread after the first 1,000 frames {run['rss_spread_mb']} MB)"
                )
            update_results(args.out, {"soak": {"git_commit": git_commit(), "runs": runs}})
            return 0
        rows = node_bench.main_streams(args)
        update_results(args.out, {"ros": {"git_commit": git_commit(), "streams": rows}})
        return 0
    if args.compare:
        from ros2_ttvos import checkpoint
        from ros2_ttvos.bench_variants import compare_weights

        paths = [args.weights or checkpoint.SHIPPED_WEIGHTS, *args.compare]
        rows = compare_weights(paths, args.frames, args.threads)
        update_results(args.out, {"compare": {"git_commit": git_commit(), "threads": args.threads, "rows": rows}})
        return 0
    tracker = Tracker.from_pretrained(args.weights, device=args.device)
    model = tracker.backend.model
    info = model_info(model, tracker.device)
    print(
        f"parameters {info['parameters'] / 1e6:.2f} M ({info['parameters_excluding_backbone'] / 1e6:.2f} M "
        f"outside the backbone), {info['gflops_per_frame']:.2f} GFLOPs per frame at 480x864 with one object, "
        f"{info['gflops_per_extra_object']:.2f} for each further object"
    )
    if args.model_info:
        return 0
    if args.width_sweep:
        from ros2_ttvos.bench_variants import width_sweep

        rows = width_sweep(model, args.frames, args.threads)
        update_results(args.out, {"width_sweep": {"git_commit": git_commit(), "threads": args.threads, "rows": rows}})
        return 0
    if args.region_cost:
        from ros2_ttvos.bench_variants import region_cost

        rows = region_cost(model, args.frames, tracker.device)
        update_results(args.out, {"region_cost": {"git_commit": git_commit(), "threads": args.threads, "rows": rows}})
        return 0
    results = {"threads": args.threads, "git_commit": git_commit(), **info}
    # Memory first, while the process holds only this tracker and the model.
    runner = Tracker.from_model(model, tracker.device, internal_size=None)
    results["memory"] = memory = memory_run(runner, SIZES[1], args.memory_frames)
    print(f"\nmemory, one stream at {SIZES[1][0]}x{SIZES[1][1]}, 2 objects:")
    for key in sorted(memory.keys() - {"size", "objects"}, key=lambda k: int(k.split("_")[1])):
        m = memory[key]
        print(f"  {key:>11}: state {m['state_bytes']} B, RSS {m['rss_mb']} MB, peak RSS {m['peak_rss_mb']} MB")
    # (backend, device, precision): on a GPU, torch on CUDA in fp32 and fp16, and on the CPU too.
    runs = [("torch", tracker.device, "fp32")]
    if tracker.device.startswith("cuda"):
        runs += [("torch", tracker.device, "fp16"), ("torch", "cpu", "fp32")]
    if "onnxruntime" in args.backends:
        runs.append(("onnxruntime", args.device, "fp32"))  # CUDA too where its provider is installed
    if "openvino" in args.backends:
        runs.append(("openvino", "cpu", "fp32"))
        if OpenVinoBackend.cpu_has_bf16():  # the opt-in precision, where the CPU computes it natively
            runs.append(("openvino", "cpu", "bf16"))
    results["speed"] = []
    print(
        f"\n{'backend':12} {'device':6} {'input':>9} {'objects':>7} {'median ms':>10} {'p95 ms':>8} {'FPS':>7} "
        f"{'first step ms':>13}"
    )
    with tempfile.TemporaryDirectory() as export_dir:
        if any(backend != "torch" for backend, _, _ in runs):
            export(copy.deepcopy(model).cpu(), Path(export_dir))  # traced on the CPU
        for backend, device, precision in runs:
            if backend == "torch":
                trackers = {n: Tracker.from_model(model, device, precision, internal_size=None) for n in OBJECT_COUNTS}
            else:
                options = {"backend": backend, "threads": args.threads, "internal_size": None, "precision": precision}
                trackers = {n: Tracker.from_pretrained(export_dir, device, **options) for n in OBJECT_COUNTS}
            for shape in SIZES:
                for objects, timing in time_object_counts(trackers, shape, args.frames).items():
                    row = {"backend": backend, "precision": precision, "device": trackers[objects].device}
                    row.update(input=list(shape), objects=objects, **timing)
                    results["speed"].append(row)
                    print(
                        f"{run_label(row):12} {row['device']:6} {shape[0]:>4}x{shape[1]:<4} {objects:>7} "
                        f"{row['median_ms']:>10.1f} {row['p95_ms']:>8.1f} {row['fps']:>7.2f} "
                        f"{row['first_step_ms']:>13.1f}"
                    )
    results["ratios"] = speed_ratios(results["speed"])
    for key, value in results["ratios"].items():
        print(f"  {key}: {value:.2f}")
    update_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
