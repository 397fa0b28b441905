"""Training threads that leave cores to other work on the machine: ``CoreShare``.

A long run trains niced beside people's work. Its threads meet after every parallel region, so
when another process takes one of its cores, the run's thread on that core (niced) barely runs
and holds the others up: on 2 cores, one foreground process slowed a 2-thread step about 10x.
``CoreShare`` measures over windows of ``window`` seconds how many cores the machine's other
processes keep busy (``/proc/stat`` less this process's own CPU time) and trains on the cores they
leave free: at least one thread, at most the configured number. Linux only; elsewhere the thread
count stays as configured.
"""

import logging
import os
import time
from typing import Callable, Optional, Tuple

import torch

LOG = logging.getLogger("ttvos-train")

Sample = Tuple[float, float, float]  # wall seconds, CPU seconds of the whole machine, of this process
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_sample() -> Optional[Sample]:
    """Now: the monotonic clock, the machine's busy CPU seconds (all but idle and I/O wait), this
    process's CPU seconds (all its threads); None without ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]  # user .. steal
    except (OSError, ValueError):
        return None
    own = os.times()
    busy = sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait
    return time.monotonic(), busy / _CLOCK_TICKS, own.user + own.system


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CoreShare:
    """Sets torch's thread count to the cores other processes leave free; call ``update()`` often
    (every training step): it measures and acts once a window has passed."""

    def __init__(
        self,
        max_threads: int,
        window: float = 10.0,
        cores: Optional[int] = None,
        sample: Callable[[], Optional[Sample]] = machine_sample,
    ):
        self.max_threads = max(1, max_threads)
        self.window = window
        self.cores = cores if cores is not None else usable_cores()
        self._sample = sample
        self._last = sample()
        self.threads = self.max_threads
        self.others = 0.0  # cores the other processes kept busy in the last window
        if self._last is None:
            LOG.info("no /proc/stat: training keeps %d threads whatever else runs", self.max_threads)

    def update(self) -> int:
        """The thread count to train with now (changed, and logged, at the end of a window)."""
        if self._last is None:
            return self.threads
        now = self._sample()
        if now is None or now[0] - self._last[0] < self.window:
            return self.threads
        wall, machine, own = (later - earlier for later, earlier in zip(now, self._last, strict=True))
        self._last = now
        self.others = max(0.0, (machine - own) / wall)
        threads = min(self.max_threads, max(1, int(self.cores - self.others + 0.5)))  # free cores, rounded
        if threads != self.threads:
            LOG.info(
                "other processes kept %.1f of %d cores busy: training on %d threads", self.others, self.cores, threads
            )
            self.threads = threads
            torch.set_num_threads(threads)
        return self.threads
