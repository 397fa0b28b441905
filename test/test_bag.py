"""ttvos-bag: a bag made from the bundled clip, evaluated through the real node both ways."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ros2_ttvos import checkpoint, metrics
from ros2_ttvos.demo import SAMPLE_ROOT, SAMPLE_SEQUENCE, sample_clip
from ros2_ttvos.evaluate import track_sequence
from ros2_ttvos.prompt_crops import mask_box
from ros2_ttvos.tracker import Tracker

INTERNAL_SIZE = 160


def ttvos_bag(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ros2_ttvos.ros.bag", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    for name, extra in (("raw", []), ("jpeg", ["--compressed", "--format", "sqlite3"])):
        result = ttvos_bag("from-davis", "--davis", SAMPLE_ROOT, "--sequence", SAMPLE_SEQUENCE, "--rate", 10,
                           *extra, "--out", root / name)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "25 image, 25 camera_info, 25 ground_truth/masks" in result.stdout
    return root


@pytest.fixture(scope="module")
def weights(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "ttvos.pt"
    checkpoint.save_atomic(checkpoint.model_payload(network), path)
    return path


def evaluate(bags, weights, out, *extra, bag="raw"):
    options = ["--weights", weights, "--internal-size", INTERNAL_SIZE, "--backend", "torch"]
    result = ttvos_bag("eval", "--bag", bags / bag, *options, *extra, "--out", out)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads((out / "report.json").read_text())


def test_every_frame_matches_the_offline_evaluation(bags, weights, network, tmp_path):
    report = evaluate(bags, weights, tmp_path, "--every-frame")
    run = track_sequence(Tracker.from_model(network, device="cpu", internal_size=INTERNAL_SIZE), sample_clip())
    offline = metrics.sequence_scores(run.labels, run.truth)[1]
    offline_jf = (offline.J_stats.mean + offline.F_stats.mean) / 2
    assert report["scores"]["overall"]["JF_mean"] == pytest.approx(offline_jf, abs=1e-3)
    timing = report["timing"]
    assert timing["frames_in"] == timing["frames_out"] == 25 and timing["dropped"] == 0
    assert timing["latency_ms_p50"] > 0
    for name in ("report.md", "plots.png", "overlay.mp4", "outputs"):
        assert (tmp_path / name).exists()


def test_realtime_compressed_sqlite_bag(bags, weights, tmp_path):
    report = evaluate(bags, weights, tmp_path, "--realtime", bag="jpeg")
    timing = report["timing"]
    assert timing["frames_in"] == 25 and 1 <= timing["frames_out"] <= 25
    assert timing["dropped"] == 25 - timing["frames_out"]
    assert 0.0 <= report["scores"]["overall"]["JF_mean"] <= 1.0


def test_bag_without_ground_truth_tracks_from_a_targets_file(bags, weights, tmp_path):
    mask = tmp_path / "mask.png"
    Image.fromarray(sample_clip().mask(0)).save(mask)
    report = evaluate(bags, weights, tmp_path / "out", "--gt-topic", "none", "--targets-file", mask,
                      "--targets-frame", 0)  # fmt: skip
    assert report["scores"]["overall"] is None and report["timing"]["frames_out"] == 25
    untracked = evaluate(bags, weights, tmp_path / "timing-only", "--gt-topic", "none")
    assert untracked["scores"]["overall"] is None and untracked["timing"]["frames_out"] == 25
    assert (tmp_path / "timing-only" / "overlay.mp4").is_file()


def test_a_box_or_a_click_starts_tracking_in_a_bag_with_ground_truth(bags, weights, tmp_path):
    car = sample_clip().mask(0) > 0
    x0, y0, x1, y1 = mask_box(car)
    report = evaluate(bags, weights, tmp_path / "box", "--every-frame", "--targets-box", f"{x0},{y0},{x1},{y1}")
    assert report["timing"]["frames_out"] == 25
    assert [o["object"] for o in report["scores"]["objects"]] == [1]
    assert 0.0 < report["scores"]["overall"]["JF_mean"] <= 1.0
    ys, xs = np.nonzero(car)
    click = f"{np.median(xs):.0f},{np.median(ys):.0f}"
    report = evaluate(bags, weights, tmp_path / "click", "--every-frame", "--targets-click", click)
    assert [o["object"] for o in report["scores"]["objects"]] == [1]
    assert 0.0 < report["scores"]["overall"]["JF_mean"] <= 1.0


def test_unusable_bags_fail_clearly(bags, tmp_path):
    result = ttvos_bag("eval", "--bag", bags / "raw", "--image-topic", "camera/missing", "--out", tmp_path / "a")
    assert result.returncode == 1 and "no topic 'camera/missing'" in result.stderr
    result = ttvos_bag("eval", "--bag", bags / "raw", "--image-topic", "camera_info", "--out", tmp_path / "b")
    assert result.returncode == 1 and "not sensor_msgs/Image" in result.stderr
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = next((bags / "raw").glob("*.mcap")).read_bytes()
    (truncated / "truncated.mcap").write_bytes(data[: len(data) // 2])
    result = ttvos_bag("eval", "--bag", truncated / "truncated.mcap", "--out", tmp_path / "c")
    assert result.returncode == 1 and "cannot" in result.stderr
    assert not (tmp_path / "c" / "report.json").exists()
    result = ttvos_bag("eval", "--bag", bags / "raw", "--node", "nobody", "--timeout", 3, "--out", tmp_path / "d")
    assert result.returncode == 1 and "waited 3.0 s" in result.stderr
