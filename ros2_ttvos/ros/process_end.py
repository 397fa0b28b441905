"""Ending a ROS process after its orderly shutdown, without Python's interpreter teardown."""

import ctypes
import logging
import os
import sys


def end_process(code: int = 0) -> None:
    """Flush every output stream, then end the process with ``code`` at once.

    For a process whose ROS nodes are destroyed and whose rclpy context is shut down: nothing of
    ROS is left for Python's teardown, which would only run torch's operator-library finalizers.
    Those crashed a node at exit now and then (SIGSEGV in torch/library.py ``_del_library``;
    docs/node-failures.md).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    ctypes.CDLL(None).fflush(None)  # the C streams too (rcutils writes the ROS log lines)
    os._exit(code)
