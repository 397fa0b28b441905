"""One trainer per run directory: ``hold_run_dir``.

Two trainers resumed into one run directory both append to its log and overwrite each other's
checkpoints (it happened: a restart whose ``kill`` reached a wrapper shell, not the trainer). The
first trainer holds an exclusive lock on ``RUN_DIR/train.lock`` for as long as it runs, with its
pid written in it; a trainer in another process is refused with that pid (trainers made one after
another in one process, as in the tests and ``ttvos-ablate``, share it). The kernel drops the lock
when the process ends however it ends, so a killed run leaves nothing to clean up.
"""

import fcntl
import os
from pathlib import Path
from typing import IO, Dict

_HELD: Dict[Path, IO] = {}  # run directories this process holds


class RunDirInUseError(RuntimeError):
    """Another live process trains this run directory."""


def hold_run_dir(run_dir: Path) -> IO:
    """Lock ``run_dir`` for this process, until it ends, or raise ``RunDirInUseError`` naming the
    process that holds it."""
    key = run_dir.resolve()
    if key in _HELD:
        return _HELD[key]
    handle = open(run_dir / "train.lock", "a+")  # noqa: SIM115 (held open until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirInUseError(
            f"{run_dir} is being trained by process {holder}: stop it first (kill -TERM {holder})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD[key] = handle
    return handle
