"""``ttvos-bench --width-sweep``, ``--compare`` and ``--region-cost``: variants timed side by side,
in turns on the same frames: narrower per-object layers of the loaded network, other weights files
(a stronger backbone) against the shipped ones, and the step with and without its search region."""

import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

from ros2_ttvos import checkpoint
from ros2_ttvos.bench_timing import SIZES, model_info, time_in_turns, time_object_counts
from ros2_ttvos.export import export
from ros2_ttvos.model.factorize import narrow
from ros2_ttvos.model.ttvos import TTVOS
from ros2_ttvos.tracker import Tracker

# Narrower per-object layers (TTVOSConfig overrides) for --width-sweep: does the cost of a further
# object follow its FLOPs? The layers whose shapes change are untrained: timing only.
RANKS_8 = {"attention": 8, "st_match": 8, "final": 8, "lt_history": 8}
WIDTH_VARIANTS = {
    "as loaded": {},
    "decoder 8, ranks 8": {"decoder_channels": 8, "head_ranks": RANKS_8},
    "attention 24, decoder 8, ranks 8": {"attention_channels": 24, "decoder_channels": 8, "head_ranks": RANKS_8},
    "attention 8, decoder 4, ranks 4": {
        "attention_channels": 8,
        "decoder_channels": 4,
        "head_ranks": {"attention": 4, "st_match": 4, "final": 4, "lt_history": 4},
    },
    "templates 32": {"short_term_channels": 32, "long_term_channels": 32},
    "templates 32, attention 24, decoder 8, ranks 8": {
        "short_term_channels": 32,
        "long_term_channels": 32,
        "attention_channels": 24,
        "decoder_channels": 8,
        "head_ranks": RANKS_8,
    },
}


def width_sweep(model: TTVOS, frames: int, threads: int) -> List[Dict]:
    """1 and 4 objects at 480x854 through OpenVINO for each of ``WIDTH_VARIANTS`` (in turns, as the
    speed runs), with each variant's FLOPs per further object."""
    rows = []
    for name, overrides in WIDTH_VARIANTS.items():
        variant = narrow(model.cpu(), overrides).eval()
        gflops = model_info(variant, "cpu")["gflops_per_extra_object"]
        with tempfile.TemporaryDirectory() as export_dir:
            export(variant, Path(export_dir))
            options = {"backend": "openvino", "threads": threads, "internal_size": None}
            trackers = {n: Tracker.from_pretrained(export_dir, "cpu", **options) for n in (1, 4)}
            timing = time_object_counts(trackers, SIZES[0], frames)
        one, four = timing[1]["median_ms"], timing[4]["median_ms"]
        rows.append(
            {
                "variant": name, "overrides": overrides, "gflops_per_extra_object": gflops, "input": list(SIZES[0]),
                "median_ms_1_object": one, "median_ms_4_objects": four,
                "ms_per_further_object": (four - one) / 3, "ratio_4_to_1": four / one,
            }
        )  # fmt: skip
        print(
            f"{name:46} {gflops:>6.2f} GFLOPs/object  1 object {one:6.1f} ms  4 objects {four:6.1f} ms  "
            f"{(four - one) / 3:5.1f} ms per further object  4/1 = {four / one:.2f}"
        )
    return rows


def compare_weights(paths: Sequence[Path], frames: int, threads: int, precision: str = "auto") -> List[Dict]:
    """1 and 4 objects at each of ``SIZES`` through OpenVINO for each checkpoint of ``paths``, all
    stepped in turns, with each one's backbone, GFLOPs per frame and speed relative to the first."""
    rows: List[Dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        cases, described = {}, {}
        for index, path in enumerate(paths):
            model = checkpoint.build_model(checkpoint.load(path)).eval()
            export_dir = Path(scratch) / str(index)
            export(model, export_dir)
            options = {"backend": "openvino", "threads": threads, "internal_size": None, "precision": precision}
            for objects in (1, 4):
                cases[(index, objects)] = (Tracker.from_pretrained(export_dir, "cpu", **options), objects)
            described[index] = {
                "weights": str(path), "backbone": model.config.backbone,
                "gflops_per_frame": model_info(model, "cpu")["gflops_per_frame"],
            }  # fmt: skip
        for shape in SIZES:
            timing = time_in_turns(cases, shape, frames)
            for (index, objects), measured in timing.items():
                reference = timing[(0, objects)]["median_ms"]
                rows.append(
                    {**described[index], "input": list(shape), "objects": objects,
                     "precision": cases[(index, objects)][0].backend.precision,
                     **measured, "speed_vs_first": reference / measured["median_ms"]}
                )  # fmt: skip
                row = rows[-1]
                print(
                    f"{row['backbone']:20} {Path(row['weights']).name:24} {row['gflops_per_frame']:6.2f} GFLOPs  "
                    f"{row['precision']:4} {shape[0]:>4}x{shape[1]:<4} {objects} object(s) {row['median_ms']:7.1f} ms  "
                    f"{row['fps']:6.1f} FPS  x{row['speed_vs_first']:.2f} of the first"
                )
    return rows


def region_cost(model: TTVOS, frames: int, device: str = "cpu") -> List[Dict]:
    """1 and 4 objects at each of ``SIZES`` through the torch backend with the search region
    (``model.search_region``, with the Tracker's ``main_component`` rule) on and off, in turns:
    what the region adds to a step. The eager step skips the region when it is off; an exported
    step computes it either way."""
    cases = {
        (region, objects): (Tracker.from_model(model, device, internal_size=None, search_region=region), objects)
        for region in (True, False)
        for objects in (1, 4)
    }
    rows = []
    for shape in SIZES:
        timing = time_in_turns(cases, shape, frames)
        for objects in (1, 4):
            on, off = timing[(True, objects)]["median_ms"], timing[(False, objects)]["median_ms"]
            share = (on - off) / on
            rows.append(
                {"backend": "torch", "input": list(shape), "objects": objects, "median_ms_with_region": on,
                 "median_ms_without_region": off, "region_share_of_step": share}
            )  # fmt: skip
            print(
                f"torch {shape[0]:>4}x{shape[1]:<4} {objects} object(s): with the search region {on:7.1f} ms, "
                f"without {off:7.1f} ms: the region is {100 * share:5.1f} % of the step"
            )
    return rows
