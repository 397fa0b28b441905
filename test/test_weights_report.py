"""``scripts/weights-report.sh``: the figures weights are shipped on, run on a tiny hold-out."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ros2_ttvos.data_cli import main as data_main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "weights-report.sh"
SETS = ("single", "multi")  # the hold-out train sequences, and the multi-object benchmark made from them


def _holdout_named_as_configured(tiny_davis: Path, out: Path) -> Path:
    """A DAVIS-layout copy of the tiny sequences under the hold-out names of config/train.yaml."""
    holdout = yaml.safe_load((REPO / "config" / "train.yaml").read_text())["data"]["holdout"]
    for kind in ("JPEGImages", "Annotations"):
        for name, source in zip(holdout, ("seq-b", "seq-c", "seq-d"), strict=True):
            shutil.copytree(tiny_davis / kind / "480p" / source, out / kind / "480p" / name)
    return out


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "ttvos-eval").exists(), reason="the script runs .venv's ttvos-eval")
def test_holdout_report_tabulates_each_set_and_the_selection_from_ttvos_eval(tiny_config, tmp_path):
    pytest.importorskip("openvino")
    tiny_davis = Path(tiny_config["data"]["davis_root"])
    single = _holdout_named_as_configured(tiny_davis, tmp_path / "holdout")
    multi = tmp_path / "multi"
    made = data_main(
        ["multi", "--davis", str(tiny_davis), "--sequences", "seq-b", "--variants", "1", "--out", str(multi)]
    )
    assert made == 0
    env = {**os.environ, "SIZES": "64 96", "THREADS": "1", "TRAIN_DAVIS": str(single), "MULTI": str(multi),
           "EVAL_FLAGS": "--no-region-state"}  # fmt: skip
    out = tmp_path / "report"
    done = subprocess.run([str(SCRIPT), "shipped", str(out), "holdout"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "holdout.md").read_text()
    assert table.startswith("holdout: shipped (OpenVINO fp32, --no-region-state)")
    assert done.stdout.endswith(table)  # after ttvos-eval's one line per run
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith(("| single", "| multi"))]
    assert [(row[0], row[1]) for row in rows] == [("single", "64"), ("single", "96"), ("multi", "64"), ("multi", "96")]
    for row in rows:
        summary = json.loads((out / f"{row[0]}-{row[1]}" / "summary.json").read_text())
        assert float(row[2]) == pytest.approx(100 * summary["JF_mean"], abs=0.005)
        assert summary["backend"] == "openvino" and summary["internal_size"] == int(row[1])
        assert summary["region_state"] is False  # EVAL_FLAGS reached ttvos-eval
    for size in ("64", "96"):
        scores = [json.loads((out / f"{name}-{size}" / "summary.json").read_text())["JF_mean"] for name in SETS]
        assert f"selection at {size}: {50 * sum(scores):.2f}" in table.splitlines()


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "ttvos-eval").exists(), reason="the script runs .venv's ttvos-eval")
def test_crowd_report_scores_the_crowd_form_of_the_benchmark(tiny_config, tmp_path):
    pytest.importorskip("openvino")
    crowd = tmp_path / "crowd"
    made = ["multi", "--davis", tiny_config["data"]["davis_root"], "--sequences", "seq-b", "--variants", "1", "--crowd"]
    assert data_main([*made, "--out", str(crowd)]) == 0
    env = {**os.environ, "SIZES": "64", "THREADS": "1", "CROWD": str(crowd)}
    out = tmp_path / "report"
    done = subprocess.run([str(SCRIPT), "shipped", str(out), "crowd"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.strip("| ").split(" | ") for line in (out / "crowd.md").read_text().splitlines() if "| crowd" in line]
    summary = json.loads((out / "crowd-64" / "summary.json").read_text())
    assert [(row[0], row[1]) for row in rows] == [("crowd", "64")] and summary["n_objects"] == 1
    assert float(rows[0][2]) == pytest.approx(100 * summary["JF_mean"], abs=0.005)


def test_an_unknown_set_is_refused_with_the_usage(tmp_path):
    done = subprocess.run([str(SCRIPT), "shipped", str(tmp_path), "train"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "usage: scripts/weights-report.sh" in done.stderr
    assert not any(tmp_path.iterdir())
