"""What the node reports on /diagnostics: rolling statistics of its work and the status they make."""

import time
from collections import deque
from typing import Deque, Dict

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

STATS_WINDOW = 200


class RollingStats:
    """Recent values and event times for the diagnostics."""

    def __init__(self):
        self.values: Deque[float] = deque(maxlen=STATS_WINDOW)
        self.times: Deque[float] = deque(maxlen=STATS_WINDOW)

    def add(self, value: float = 0.0) -> None:
        self.values.append(value)
        self.times.append(time.monotonic())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values, q)) if self.values else float("nan")

    def rate(self, window: float = 5.0) -> float:
        now = time.monotonic()
        return sum(1 for t in self.times if now - t <= window) / window


def tracking_status(name: str, values: Dict[str, object], state: str) -> DiagnosticStatus:
    """OK while tracking; WARN when not active or after an error (``values["last_error"]``)."""
    status = DiagnosticStatus(name=name, hardware_id="ttvos")
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    if state != "active":
        status.level, status.message = DiagnosticStatus.WARN, f"not processing ({state})"
    elif values.get("last_error"):
        status.level, status.message = DiagnosticStatus.WARN, str(values["last_error"])
    else:
        status.level, status.message = DiagnosticStatus.OK, "tracking"
    return status
