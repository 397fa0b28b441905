"""end_process: output written before it reaches the file, the exit code is kept, and Python's
teardown (where torch's finalizers run) does not run."""

import os
import subprocess
import sys

SCRIPT = """
import atexit, ctypes, sys
from ros2_ttvos.ros.process_end import end_process
atexit.register(lambda: open(sys.argv[1], "w").write("teardown ran"))
print("python line")
ctypes.CDLL(None).printf(b"C line\\n")  # buffered by C stdio when stdout is a file
end_process(3)
"""


def test_end_process_flushes_output_and_skips_teardown(tmp_path):
    marker, out = tmp_path / "teardown", tmp_path / "out.txt"
    buffered = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    with open(out, "w") as stdout:
        result = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], stdout=stdout, env=buffered, timeout=60)
    assert result.returncode == 3
    assert out.read_text().splitlines() == ["python line", "C line"]
    assert not marker.exists()
