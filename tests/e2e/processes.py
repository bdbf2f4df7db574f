"""Servers the browser tests start: a free port, and a process that serves until the block ends.

Streamlit and the OpenID Connect provider are started the same way: in their own process group (so that
their children go too), logging to a file, ready once a URL answers 200, and stopped with SIGTERM, then
SIGKILL if they linger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, n: int = 60) -> str:
    """The last `n` lines of a log file, or "(no log)"."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _raise(message: str) -> NoReturn:
    raise RuntimeError(message)


@contextlib.contextmanager
def serving(cmd: list[str], ready_url: str, log_path: Path, timeout_s: float, name: str,
            fail: Callable[[str], NoReturn] = _raise, poll_s: float = 0.5, stop_s: float = 15.0,
            **popen_kw) -> Iterator[None]:
    """Run `cmd` until the block ends; enter the block once `ready_url` answers 200.

    `fail` is called with a message naming `name` and the log's tail when the process exits first or
    does not answer within `timeout_s` (default: raise RuntimeError; the fixtures pass pytest.fail).
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen_kw)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    fail(f"{name} exited with code {proc.returncode} before answering:\n{log_tail(log_path)}")
                with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                    with urllib.request.urlopen(ready_url, timeout=5) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    fail(f"{name} did not answer within {timeout_s:.0f} s:\n{log_tail(log_path)}")
                time.sleep(poll_s)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=stop_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=stop_s)
