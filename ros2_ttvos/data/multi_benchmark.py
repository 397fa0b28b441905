"""A multi-object benchmark made from the hold-out train sequences only (``ttvos-data multi``).

No multi-object video set is reachable here. Each benchmark sequence is a whole hold-out DAVIS16
train sequence at 480p with 2 or 3 targets: its own object and objects cut from the hold-out
sequences' frames (another sequence's object, or the same object from a distant frame: a
look-alike), moving over it on their own paths, crossing and occluding each other, entering and
leaving the view, among distractors (``data.composite``). Its crowd form (``crowd=True``) keeps
each sequence's own object as the one target, among two or three copies of it cut from the
sequence's own frames (``add_look_alike``): what spills onto look-alikes. Written in the DAVIS
2017 layout (palette PNGs, ``ImageSets/2017/val.txt``) so that ``ttvos-eval --year 2017`` scores it. Nothing
here comes from DAVIS16 val, and the cut-outs come from the hold-out sequences only: the
benchmark is as unseen by training as the hold-out sequences themselves. Deterministic from its
seed.
"""

import json
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ros2_ttvos.data.composite import MIN_VISIBLE, CutOut, add_look_alike, multi_object_clip
from ros2_ttvos.data.davis import Davis, DavisSequence, write_mask

MAX_TRAVEL = 0.8  # frame widths a pasted object moves over a whole sequence, at most


def _cut_outs(sequences: Sequence[DavisSequence], per_sequence: int) -> List[CutOut]:
    """Objects cut from evenly spaced annotated frames of ``sequences``."""
    cuts = []
    for sequence in sequences:
        for index in np.linspace(0, len(sequence) - 1, per_sequence).round().astype(int):
            mask = sequence.mask(int(index))
            cut = None if mask is None else CutOut.from_mask(sequence.image(int(index)), mask)
            if cut is not None:
                cuts.append(cut)
    if not cuts:
        raise ValueError("no object to cut from the hold-out sequences")
    return cuts


def _crowd_clip(frames: np.ndarray, masks: np.ndarray, copies: int, rng: np.random.Generator):
    """The sequence's object (label 1) among ``copies`` look-alikes of itself; None when the
    object is not visible on the first frame."""
    clip = (frames, (masks > 0).astype(np.uint8))
    for _ in range(copies):
        clip = add_look_alike(clip, rng, max_travel=MAX_TRAVEL)
    return clip if (clip[1][0] == 1).mean() >= MIN_VISIBLE else None


def make_benchmark(
    davis_root: Path,
    sequences: Sequence[str],
    out: Path,
    seed: int = 0,
    variants: int = 3,
    resolution: str = "480p",
    crowd: bool = False,
) -> Dict:
    """Write ``variants`` composed sequences per name in ``sequences`` into ``out`` (``crowd``:
    in the crowd form); returns the description also written to ``out/benchmark.json``."""
    davis = Davis(davis_root, 2016, resolution=resolution, sequences=list(sequences))
    sources = [davis.sequence(name) for name in sequences]
    cuts = _cut_outs(sources, per_sequence=6)
    written = []
    with tqdm(total=len(sources) * variants, desc="compose", unit="sequence") as progress:
        for number, source in enumerate(sources):
            frames = np.stack(list(source.images()))
            masks = [source.mask(i) for i in range(len(source))]
            masks = np.stack([m if m is not None else np.zeros(frames.shape[1:3], np.uint8) for m in masks])
            for variant in range(variants):
                rng = np.random.default_rng([seed, number, variant])
                targets = 1 if crowd else 2 + variant % 2
                for _ in range(100):
                    if crowd:
                        clip = _crowd_clip(frames, masks, 2 + variant % 2, rng)
                    else:
                        clip = multi_object_clip(
                            (frames, masks), targets, rng, lambda r: cuts[int(r.integers(len(cuts)))],
                            max_distractors=2, max_travel=MAX_TRAVEL,
                        )  # fmt: skip
                    if clip is not None:
                        break
                else:
                    raise ValueError(f"{source.name}: no composition with every target visible in 100 draws")
                name = f"{source.name}-{'crowd' if crowd else 'multi'}{variant}"
                _write_sequence(out, resolution, name, *clip)
                written.append({"name": name, "source": source.name, "targets": targets, "frames": len(frames)})
                progress.update(1)
    (out / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{s['name']}\n" for s in written))
    description = {
        "seed": seed, "variants": variants, "crowd": crowd, "sources": list(sequences), "sequences": written
    }  # fmt: skip
    (out / "benchmark.json").write_text(json.dumps(description, indent=2))
    return description


def _write_sequence(out: Path, resolution: str, name: str, frames: np.ndarray, labels: np.ndarray) -> None:
    image_dir = out / "JPEGImages" / resolution / name
    image_dir.mkdir(parents=True, exist_ok=True)
    for index, (frame, frame_labels) in enumerate(zip(frames, labels, strict=True)):
        cv2.imwrite(str(image_dir / f"{index:05d}.jpg"), frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_mask(out / "Annotations" / resolution / name / f"{index:05d}.png", frame_labels)
