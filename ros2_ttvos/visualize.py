"""What a person looks at: overlays of label masks on frames, overlay videos, training curves."""

import itertools
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from ros2_ttvos.data.davis import davis_palette
from ros2_ttvos.run_log import read_rows

_PALETTE = davis_palette()


def overlay(image: np.ndarray, labels: np.ndarray, confidences: Optional[Dict[int, float]] = None) -> np.ndarray:
    """RGB frame with each object's pixels tinted in its DAVIS palette colour and outlined.

    Confidences, when given, are written next to each object's box.
    """
    out = image.copy()
    colours = _PALETTE[labels]
    objects = labels > 0
    out[objects] = (0.45 * image[objects] + 0.55 * colours[objects]).astype(np.uint8)
    for object_id in np.unique(labels):
        if object_id == 0:
            continue
        mask = (labels == object_id).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        colour = tuple(int(c) for c in _PALETTE[object_id])
        cv2.drawContours(out, contours, -1, colour, 2)
        if confidences and int(object_id) in confidences:
            x, y, _, _ = cv2.boundingRect(mask)
            text = f"{int(object_id)}: {confidences[int(object_id)]:.2f}"
            cv2.putText(out, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
    return out


def clip_sheet(frames: np.ndarray, labels: np.ndarray, columns: int = 6) -> np.ndarray:
    """A batch as one image: a row per clip (frames (B, T, H, W, 3) RGB, labels (B, T, H, W)) of
    ``columns`` frames spread over the clip, first and last among them, labels overlaid."""
    rows = []
    for clip_frames, clip_labels in zip(frames, labels, strict=True):
        picks = np.linspace(0, len(clip_frames) - 1, min(columns, len(clip_frames))).round().astype(int)
        rows.append(np.concatenate([overlay(clip_frames[i], clip_labels[i]) for i in picks], axis=1))
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0))) for row in rows])


class VideoWriter:
    """MP4 writer for RGB frames (size taken from the first frame)."""

    def __init__(self, path: Union[str, Path], fps: float = 15.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self._writer: Optional[cv2.VideoWriter] = None

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            size = (rgb.shape[1], rgb.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                raise OSError(f"cannot open video writer for {self.path}")
        self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _log_rows(run_dir: Path) -> List[Dict[str, str]]:
    """The rows of ``RUN_DIR/log.csv``; ValueError when it has none yet."""
    rows = read_rows(run_dir / "log.csv")
    if not rows:
        raise ValueError(f"{run_dir / 'log.csv'} has no rows yet")
    return rows


def _two_panels():
    """A figure of two side-by-side axes, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, 2, figsize=(13, 4.5))


def _colors():
    """matplotlib's colour cycle, endless."""
    import matplotlib

    return itertools.cycle(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])


def _moving_average(steps: np.ndarray, values: np.ndarray, longest: int):
    """(steps, values) smoothed over a window of a tenth of the values, at most ``longest``."""
    window = max(1, min(longest, len(values) // 10))
    return steps[window - 1 :], np.convolve(values, np.ones(window) / window, mode="valid")


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


def plot_run(run_dir: Path) -> Path:
    """Write ``RUN_DIR/curves.png``: losses and hold-out J&F against the step (faint dotted: the
    trained weights, where the checks scored the moving average and those too)."""
    rows = _log_rows(run_dir)
    steps = np.array([int(r["step"]) for r in rows])
    fig, (ax_loss, ax_jf) = _two_panels()
    for name in ("segmentation", "transition", "auxiliary", "total"):
        ax_loss.plot(*_moving_average(steps, np.array([float(r[name]) for r in rows]), 50), label=name)
    ax_loss.set(xlabel="step", ylabel="loss (moving average)", yscale="log", title="training losses")
    ax_loss.legend(loc="upper right", ncol=2, fontsize="small")
    checked = [r for r in rows if r["holdout_JF"]]
    colors = _colors()
    for stage in dict.fromkeys(r["stage"] for r in checked):  # stages may check at different sizes
        points = [r for r in checked if r["stage"] == stage]
        color = next(colors)  # one colour (and one legend entry) a stage; the style says what was scored
        for key, marker, line in (("holdout_JF", "o", "-"), ("multi_JF", "s", "--")):
            scored = [r for r in points if r.get(key)]
            if scored:
                ax_jf.plot([int(r["step"]) for r in scored], [100 * float(r[key]) for r in scored],
                           f"{marker}{line}", color=color, label=stage if key == "holdout_JF" else None)  # fmt: skip
            raw = [r for r in points if r.get(f"raw_{key}")]  # averaging on: the trained weights too
            if raw:
                values = [100 * float(r[f"raw_{key}"]) for r in raw]
                ax_jf.plot([int(r["step"]) for r in raw], values, f"{marker}:", color=color, alpha=0.4)
    from matplotlib.lines import Line2D

    styles = [
        Line2D([], [], color="black", marker=marker, linestyle=line, alpha=alpha, label=label)  # no stage's colour
        for marker, line, alpha, label in (
            ("o", "-", 1.0, "single objects"),
            ("s", "--", 1.0, "multi-object benchmark"),
            ("o", ":", 0.4, "trained weights (not averaged)"),
        )
    ]
    ax_jf.set(xlabel="step", ylabel="J&F (%)", title="hold-out J&F (train sequences), per stage")
    handles = ax_jf.get_legend_handles_labels()[0] + styles
    ax_jf.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize="small")
    return _save(fig, run_dir / "curves.png")


def plot_runs_compared(run_dirs: Sequence[Path], out: Path) -> Path:
    """Write ``out``: the hold-out J&F of several runs against the step, single-object and
    multi-object side by side (a trial against its control)."""
    fig, (ax_single, ax_multi) = _two_panels()
    for run_dir in run_dirs:
        checked = [r for r in _log_rows(run_dir) if r["holdout_JF"]]
        steps = [int(r["step"]) for r in checked]
        ax_single.plot(steps, [100 * float(r["holdout_JF"]) for r in checked], "o-", label=Path(run_dir).name)
        multi = [r for r in checked if r.get("multi_JF")]
        ax_multi.plot(
            [int(r["step"]) for r in multi], [100 * float(r["multi_JF"]) for r in multi], "s-", label=Path(run_dir).name
        )
    ax_single.set(xlabel="step", ylabel="J&F (%)", title="hold-out sequences, single objects")
    ax_multi.set(xlabel="step", ylabel="J&F (%)", title="multi-object hold-out benchmark")
    for axis in (ax_single, ax_multi):
        axis.legend()
    return _save(fig, out)


def plot_box_run(run_dir: Path) -> Path:
    """Write ``RUN_DIR/curves.png`` for a box-head run (``ttvos-box-train``): loss and hold-out J."""
    rows = _log_rows(run_dir)
    steps = np.array([int(r["step"]) for r in rows])
    fig, (ax_loss, ax_j) = _two_panels()
    ax_loss.plot(*_moving_average(steps, np.array([float(r["loss"]) for r in rows]), 100))
    ax_loss.set(xlabel="step", ylabel="BCE + soft IoU (moving average)", title="box head: training loss")
    checked = [r for r in rows if r["selection"]]
    labels = {
        "holdout_sequences_J": "hold-out sequences, exact box",
        "holdout_jittered_J": "hold-out sequences, box jittered 10 %",
        "holdout_stills_J": "hold-out stills, exact box",
    }
    for key, label in labels.items():
        ax_j.plot([int(r["step"]) for r in checked], [100 * float(r[key]) for r in checked], "o-", label=label)
    ax_j.set(xlabel="step", ylabel="J of the mask (%)", title="box head: hold-out J")
    ax_j.legend()
    return _save(fig, run_dir / "curves.png")
