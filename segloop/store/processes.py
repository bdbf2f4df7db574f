"""Whether a process recorded by PID (a training job, a save in progress) is still alive.

psutil answers the same way on Linux, macOS and Windows (no `/proc` reading of our own).
"""

from __future__ import annotations

import psutil


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether `pid` names a live, non-zombie process.

    Parameters
    ----------
    pid : int or None
        Process id as recorded in the database or a lock file; None or 0 is never alive.
    marker : str, optional
        When given, the process's command line must contain it, so that a PID reused by an
        unrelated process after ours died does not count as ours.

    Returns
    -------
    bool
        True for a live process (with `marker` in its command line, when given); also True for a
        process of another user whose command line cannot be read. False for None/0, a process that
        no longer exists, a zombie, or a command line without `marker`.
    """
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if marker:
            return marker in " ".join(proc.cmdline())
        return True
    except psutil.AccessDenied:
        return True  # it exists; another user's process (its command line is not ours to read)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
