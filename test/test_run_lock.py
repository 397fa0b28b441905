"""One trainer per run directory (``run_lock.py``)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ros2_ttvos.run_lock import RunDirInUseError, hold_run_dir
from ros2_ttvos.train import main as train_main

HOLDER = """
import sys, time
from pathlib import Path
from ros2_ttvos.run_lock import hold_run_dir
hold_run_dir(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_trainer_of_a_run_is_refused_while_the_first_lives(tiny_config, tmp_path, caplog):
    run_dir = Path(tiny_config["run_dir"])
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUseError, match=f"process {holder.pid}"):
            hold_run_dir(run_dir)
        config = tmp_path / "train.yaml"
        config.write_text(yaml.safe_dump(tiny_config))
        assert train_main(["--config", str(config), "--resume", "--max-steps", "1"]) == 1
        assert f"is being trained by process {holder.pid}" in caplog.text
        assert not (run_dir / "last.pt").exists()  # nothing written beside the other trainer
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock; one process may hold it for trainer after trainer.
    held = hold_run_dir(run_dir)
    assert hold_run_dir(run_dir) is held
    assert (run_dir / "train.lock").read_text().strip() != str(holder.pid)
