"""J and F against the official DAVIS scores of STM's published predictions, and edge cases."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis, read_mask

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STM = SHARED / "reference" / "stm"


@pytest.fixture(scope="module")
def stm_scores():
    reference = yaml.safe_load((STM / "STM_DAVIS_16val.yaml").read_text())
    davis = Davis(SHARED / "DAVIS", 2016, "val", "480p")
    ours = {}
    for sequence in davis:
        truth = np.stack([sequence.mask(i) for i in range(len(sequence))])
        predicted = np.stack(
            [
                read_mask(STM / "STM_DAVIS_16val" / sequence.name / f"{n}.png", binary=False)
                for n in sequence.frame_names
            ]
        )
        ours[sequence.name] = metrics.sequence_scores(predicted, truth)[1]
    return ours, reference


def test_every_frame_matches_the_official_scores(stm_scores):
    ours, reference = stm_scores
    assert len(ours) == 20
    for name, scores in ours.items():
        for measure, values, stats in (("J", scores.J, scores.J_stats), ("F", scores.F, scores.F_stats)):
            official = reference["sequence"][name][measure]
            raw = np.array(official["raw"][0], dtype=np.float64)
            assert np.isnan(raw[0]) and np.isnan(raw[-1])  # the protocol drops first and last frame
            np.testing.assert_allclose(values, raw[1:-1], atol=1e-6, rtol=0)
            assert stats.mean == pytest.approx(official["mean"][0], abs=1e-9)
            assert stats.decay == pytest.approx(official["decay"][0], abs=1e-9)


def test_dataset_means_match(stm_scores):
    ours, reference = stm_scores
    j = np.mean([s.J_stats.mean for s in ours.values()])
    f = np.mean([s.F_stats.mean for s in ours.values()])
    assert j == pytest.approx(reference["dataset"]["J"]["mean"], abs=1e-7)
    assert f == pytest.approx(reference["dataset"]["F"]["mean"], abs=1e-7)
    assert (j + f) / 2 == pytest.approx(0.8926819025, abs=1e-7)


def test_empty_cases():
    empty = np.zeros((2, 10, 10), bool)
    full = np.ones((2, 10, 10), bool)
    np.testing.assert_array_equal(metrics.region_similarity(empty, empty), [1.0, 1.0])
    np.testing.assert_array_equal(metrics.region_similarity(full, empty), [0.0, 0.0])
    assert metrics.contour_accuracy(empty[0], empty[0]) == 1.0
    square = np.zeros((10, 10), bool)
    square[2:6, 2:6] = True
    assert metrics.contour_accuracy(square, empty[0]) == 0.0
    assert metrics.contour_accuracy(empty[0], square) == 0.0
    assert metrics.contour_accuracy(square, square) == 1.0


def test_statistics_recall_and_decay():
    values = np.array([np.nan, 1.0, 1.0, 0.4, 0.4, 0.2, 0.2, 0.2, np.nan])
    stats = metrics.statistics(values)
    assert stats.mean == pytest.approx(np.nanmean(values))
    assert stats.recall == pytest.approx(2 / 7)
    assert stats.decay == pytest.approx(1.0 - 0.2)


def test_boundary_of_a_square():
    square = np.zeros((8, 8), bool)
    square[2:5, 2:5] = True
    boundary = metrics.boundary_map(square)
    # A pixel is on the boundary when its east, south or south-east neighbour differs.
    assert boundary[1, 1] and boundary[4, 4] and boundary[4, 2] and boundary[1, 3]
    assert not boundary[2, 2] and not boundary[3, 3] and not boundary[0, 0] and not boundary[6, 6]
