"""Offline evaluation on DAVIS: run the Tracker over sequences and score them (``ttvos-eval``)."""

import time
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import DavisSequence
from ros2_ttvos.tracker import Tracker


@dataclass
class SequenceRun:
    """Predicted labels of a whole sequence and how long the tracker took."""

    labels: np.ndarray  # (T, H, W) uint8
    truth: np.ndarray  # (T, H, W) uint8, frames without annotation are all zero
    object_ids: List[int]
    track_seconds: float  # time inside add_objects/step (image in, labels out)
    tracked_frames: int  # frames that went through step()
    io_seconds: float  # reading frames and masks from disk


def track_sequence(tracker: Tracker, sequence: DavisSequence, progress=None) -> SequenceRun:
    """Track every object of ``sequence`` from its first annotated frame.

    The first-frame objects are added with ``add_objects``; objects that first appear later are
    added on the frame they appear in (their given mask is then that frame's output for them).
    """
    tracker.reset()
    labels, truth = [], []
    seen: set = set()
    track_seconds = io_seconds = 0.0
    tracked = 0
    for index in range(len(sequence)):
        start = time.perf_counter()
        image = sequence.image(index)
        mask = sequence.mask(index)
        if mask is None:
            mask = np.zeros(image.shape[:2], np.uint8)
        io_seconds += time.perf_counter() - start
        new_ids = [int(v) for v in np.unique(mask) if v != 0 and int(v) not in seen]
        start = time.perf_counter()
        if tracker.object_ids:
            output = tracker.step(image).labels
            tracked += 1
        else:
            output = np.zeros(image.shape[:2], np.uint8)
        if new_ids:
            given = np.where(np.isin(mask, new_ids), mask, 0).astype(np.uint8)
            tracker.add_objects(image, given)
            output = np.where(given > 0, given, output)
            seen.update(new_ids)
        track_seconds += time.perf_counter() - start
        labels.append(output)
        truth.append(mask)
        if progress is not None:
            progress.update(1)
    return SequenceRun(np.stack(labels), np.stack(truth), sorted(seen), track_seconds, tracked, io_seconds)


def score_run(run: SequenceRun) -> Dict[int, metrics.ObjectScores]:
    """J and F per object of a tracked sequence (official protocol)."""
    return metrics.sequence_scores(run.labels, run.truth, run.object_ids)


def mean_jf(scores: List[Dict[int, metrics.ObjectScores]]) -> Dict[str, float]:
    """Dataset J, F and J&F means over all objects of all sequences."""
    objects = [s for seq in scores for s in seq.values()]
    j = float(np.mean([s.J_stats.mean for s in objects]))
    f = float(np.mean([s.F_stats.mean for s in objects]))
    return {"J_mean": j, "F_mean": f, "JF_mean": (j + f) / 2}


def evaluate_sequences(tracker: Tracker, sequences: List[DavisSequence], progress=None) -> Dict[str, float]:
    """Track and score ``sequences``; returns the dataset means (used for hold-out selection)."""
    runs = [track_sequence(tracker, seq, progress) for seq in sequences]
    return mean_jf([score_run(run) for run in runs])
