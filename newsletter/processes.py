"""Whether a process of this machine still exists: the test behind taking over a crashed run's work at once."""

from __future__ import annotations

import os


def pid_gone(pid: int) -> bool:
    """Whether no live process has `pid`: none at all, or one that exited and waits to be reaped (a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # someone else's process: alive
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but not been reaped yet (state Z): dead, though `kill(pid, 0)` still finds it.

    Right after kill -9 the init process here takes a moment to reap, and a rerun must not wait for it.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
