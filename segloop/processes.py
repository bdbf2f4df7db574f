"""Whether a process recorded by PID (a training job, a save in progress) is still alive."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True for a live, non-zombie process; with `marker`, its command line must also contain it
    (on Linux), so a PID reused by an unrelated process does not count."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
            if marker and marker.encode() not in (proc / "cmdline").read_bytes():
                return False
        except OSError:
            return False
    return True
