"""Training threads that leave cores to other work (``core_share.py``)."""

import subprocess
import sys
import time

import pytest
import torch

from ros2_ttvos.core_share import CoreShare, machine_sample


class Clock:
    """Samples as ``machine_sample`` makes them, advanced by hand: (wall, machine CPU, own CPU)."""

    def __init__(self):
        self.now = (0.0, 0.0, 0.0)

    def advance(self, wall: float, others: float, own: float) -> None:
        """``wall`` seconds pass while other processes keep ``others`` cores busy and this one ``own``."""
        t, machine, mine = self.now
        self.now = (t + wall, machine + wall * (others + own), mine + wall * own)

    def __call__(self):
        return self.now


@pytest.fixture()
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_threads_follow_the_cores_other_processes_leave_free(restore_threads):
    clock = Clock()
    share = CoreShare(max_threads=2, window=10.0, cores=2, sample=clock)
    clock.advance(30.0, others=0.1, own=1.9)
    assert share.update() == 2  # its own work is not counted as others'
    clock.advance(5.0, others=1.0, own=0.2)
    assert share.update() == 2  # a window has not passed yet
    clock.advance(5.0, others=1.0, own=0.2)
    assert share.update() == 1 and torch.get_num_threads() == 1
    assert share.others == pytest.approx(1.0)
    clock.advance(10.0, others=2.0, own=0.0)
    assert share.update() == 1  # never fewer than one
    clock.advance(10.0, others=0.3, own=1.0)
    assert share.update() == 2 and torch.get_num_threads() == 2
    many = CoreShare(max_threads=4, window=10.0, cores=8, sample=clock)
    clock.advance(10.0, others=3.0, own=4.0)
    assert many.update() == 4  # five cores free, at most the configured four


def test_without_proc_stat_the_configured_threads_stay():
    share = CoreShare(max_threads=2, window=0.0, cores=2, sample=lambda: None)
    assert share.update() == 2 and share.update() == 2


@pytest.mark.skipif(machine_sample() is None, reason="needs Linux's /proc/stat")
def test_a_busy_process_beside_it_is_measured(restore_threads):
    share = CoreShare(max_threads=2, window=1.0, cores=2)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(1.5)  # sleeping: this process uses next to nothing
        share.update()
    finally:
        busy.kill()
        busy.wait()
    assert share.others >= 0.5  # the busy loop's core (and whatever else runs)
