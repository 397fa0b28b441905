"""A training run that moves between machines: sessions on fresh CPUs, chunks on lent GPUs.

A run directory (``last.pt``, ``best.pt``, ``log.csv``, ``best.json``) stays on the machine that
trains. Its travelling copy (``write_travel``) is small enough to commit to the repository and to
come back from a lent machine: the resumable checkpoint without the weights that equal the run's
init weights (the frozen ImageNet part: the init weights file is in the repository), the moving
average of the weights (when the run keeps one) as float16 differences from them, the optimiser's
moments in bfloat16, the best checkpoint's trained weights in float16, the log (gzip, its numbers
to 6 significant digits), each file cut into parts of at most ``PART_BYTES`` (about 13 MB in all,
against 40 MB).
``merge_travel`` brings such a copy back into a run directory: the later checkpoint wins, and the
log keeps the rows of both up to where each one's checkpoint is, so that CPU steps and GPU chunks
make one run with one log.
"""

import csv
import gzip
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.run_log import read_rows, write_rows

LOG = logging.getLogger(__name__)
PART_BYTES = 16 * 2**20 - 4096  # what a lent GPU machine may send back per file, with a margin
MOMENTS = ("exp_avg", "exp_avg_sq")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compact(payload: Dict[str, Any], reference: Optional[Path], half: bool = False) -> Dict[str, Any]:
    """A checkpoint, smaller: the weights equal to those of the checkpoint ``reference`` (the
    run's init weights) left out and named, the rest in float16 if ``half``; the moving average
    of the weights as float16 differences from the trained weights, those that differ; Adam's
    moments in bfloat16 (resuming casts them back to the parameters' dtype). ``expand`` restores it."""
    out = dict(payload)
    model = payload["model"]
    if "average" in payload:  # small differences: float16 keeps them to ~1e-3 of themselves
        average = out.pop("average")
        out["average_delta"] = {
            name: (value - model[name]).half() for name, value in average.items() if not torch.equal(value, model[name])
        }
    if reference is not None:
        theirs = checkpoint.load(reference)["model"]
        same = [name for name, value in model.items() if name in theirs and torch.equal(theirs[name].to(value), value)]
        model = {name: value for name, value in model.items() if name not in set(same)}
        out["reference"] = {"path": str(reference), "sha256": _file_digest(reference), "same": same}
    if half:
        model = {name: value.half() if value.is_floating_point() else value for name, value in model.items()}
    out["model"] = model
    if "optimizer" in payload:
        optimizer = dict(payload["optimizer"])
        optimizer["state"] = {
            key: {name: value.bfloat16() if name in MOMENTS else value for name, value in state.items()}
            for key, state in payload["optimizer"]["state"].items()
        }
        out["optimizer"] = optimizer
    return out


def expand(payload: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint ``compact`` made, whole again (its reference file must be unchanged)."""
    reference = payload.pop("reference", None)
    if reference is not None:
        path = Path(reference["path"])
        if not path.is_file() or _file_digest(path) != reference["sha256"]:
            raise checkpoint.CheckpointError(
                f"the travelling checkpoint needs {path} as it was (sha256 {reference['sha256'][:12]})"
            )
        theirs = checkpoint.load(path)["model"]
        kept = {name: theirs[name] for name in reference["same"]}
        payload["model"] = {**checkpoint.model_weights({"model": kept}), **payload["model"]}  # float32 floats
    delta = payload.pop("average_delta", None)
    if delta is not None:
        payload["average"] = {
            name: value.float() + delta[name].float() if name in delta else value.float()
            for name, value in payload["model"].items()
            if value.is_floating_point()
        }
    return payload


def _write_parts(data: bytes, dest: Path, name: str) -> List[str]:
    parts = []
    for index, start in enumerate(range(0, max(1, len(data)), PART_BYTES)):
        part = f"{name}.part{index:03d}"
        (dest / part).write_bytes(data[start : start + PART_BYTES])
        parts.append(part)
    return parts


def _read_parts(src: Path, entry: Dict[str, Any]) -> bytes:
    data = b"".join((src / part).read_bytes() for part in entry["parts"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise checkpoint.CheckpointError(f"{src}: the parts of {entry['name']} do not add up (sha256 differs)")
    return data


def _load(data: bytes) -> Dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _saved(payload: Dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _rounded(text: str) -> str:
    """A log cell with its fractions to 6 significant digits (steps, times and words as they are)."""
    if "." not in text and "e" not in text:
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    return text if abs(value) >= 1e6 else f"{value:.6g}"  # wall_time keeps its tenths


def _rounded_log(path: Path) -> bytes:
    """``log.csv`` with rounded numbers: half the bytes compressed, nothing a curve can show lost."""
    out = io.StringIO()
    csv.writer(out).writerows([_rounded(cell) for cell in row] for row in csv.reader(io.StringIO(path.read_text())))
    return out.getvalue().encode()


def write_travel(run_dir: Path, dest: Path, reference: Optional[Path] = None) -> Dict[str, Any]:
    """Write the travelling copy of ``run_dir`` into ``dest`` (replacing what was there), leaving
    out the weights equal to those of ``reference`` (the run's init weights, a path relative to
    the repository root where the copy is read)."""
    run_dir, dest = Path(run_dir), Path(dest)
    scratch = dest.with_name(dest.name + ".writing")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    last = checkpoint.load(run_dir / "last.pt")
    files = []
    entries = [("last.pt", _saved(compact(last, reference)))]
    if (run_dir / "best.pt").is_file():  # its trained weights in float16, as shipped weights are
        entries.append(("best.pt", _saved(compact(checkpoint.load(run_dir / "best.pt"), reference, half=True))))
    for name, data in entries:
        parts = _write_parts(data, scratch, name)
        files.append({"name": name, "parts": parts, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    if (run_dir / "log.csv").is_file():  # a row a step: compressed, it stays small over the whole schedule
        (scratch / "log.csv.gz").write_bytes(gzip.compress(_rounded_log(run_dir / "log.csv"), mtime=0))
    if (run_dir / "best.json").is_file():
        shutil.copy2(run_dir / "best.json", scratch / "best.json")
    manifest = {"step": int(last["step"]), "best_jf": float(last.get("best_jf", -1.0)), "files": files}
    (scratch / "run.json").write_text(json.dumps(manifest, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    scratch.rename(dest)
    return manifest


def travel_step(src: Path) -> Optional[int]:
    """The step of the travelling copy in ``src``, None when there is none."""
    manifest = Path(src) / "run.json"
    return int(json.loads(manifest.read_text())["step"]) if manifest.is_file() else None


def merge_travel(src: Path, run_dir: Path, log_fields: List[str]) -> bool:
    """Bring the travelling copy ``src`` into ``run_dir`` when its checkpoint is later than the
    run's; True when it did. The log becomes the run's rows up to its checkpoint's step followed
    by the copy's later rows; the best checkpoint is the copy's when it scored higher."""
    src, run_dir = Path(src), Path(run_dir)
    manifest = json.loads((src / "run.json").read_text())
    ours = checkpoint.load(run_dir / "last.pt") if (run_dir / "last.pt").is_file() else None
    our_step = int(ours["step"]) if ours is not None else -1
    if manifest["step"] <= our_step:
        LOG.info("%s is at step %d, the run at %d: nothing to merge", src, manifest["step"], our_step)
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    entries = {entry["name"]: entry for entry in manifest["files"]}
    incoming = expand(_load(_read_parts(src, entries["last.pt"])))
    our_best = ours.get("best_jf", -1.0) if ours is not None else -1.0
    if "best.pt" in entries and manifest["best_jf"] > our_best:
        checkpoint.save_atomic(expand(_load(_read_parts(src, entries["best.pt"]))), run_dir / "best.pt")
        if (src / "best.json").is_file():
            shutil.copy2(src / "best.json", run_dir / "best.json")
    elif ours is not None:  # keep our best and its score
        incoming["best_jf"] = ours.get("best_jf", -1.0)
        incoming["best_size"], incoming["best_protocol"] = ours.get("best_size"), ours.get("best_protocol")
    if (run_dir / "last.pt").is_file():
        (run_dir / "last.pt").replace(run_dir / "previous.pt")
    checkpoint.save_atomic(incoming, run_dir / "last.pt")
    rows = [r for r in read_rows(run_dir / "log.csv") if int(r["step"]) <= our_step]
    rows += [r for r in read_rows(src / "log.csv") if our_step < int(r["step"]) <= manifest["step"]]
    write_rows(run_dir / "log.csv", log_fields, rows)
    LOG.info("merged %s (step %d) into %s (was step %d)", src, manifest["step"], run_dir, our_step)
    return True
