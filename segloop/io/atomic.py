"""Atomic file writes: a crash mid-write leaves the previous file intact, never a half-written one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to a file atomically: a crash leaves either the old file or the new one, never half of one.

    The bytes go to a temporary file in the same folder (so the final rename stays on one file
    system), are fsynced, then the temporary file is renamed over `path`. Missing parent folders
    are created; the file gets the usual permissions (0666 minus the umask), not mkstemp's 0600.

    Parameters
    ----------
    path : str or pathlib.Path
        Target file; replaced if it exists.
    data : bytes
        The complete new content of the file.

    Returns
    -------
    None

    Raises
    ------
    OSError
        When the folder cannot be created or the file cannot be written; the temporary file is
        removed and any previous file at `path` is left unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries to disk, so a rename or link just made in it survives a power cut.

    A no-op where folders cannot be opened for fsync (Windows).
    """
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write an object as indented UTF-8 JSON (with a trailing newline) atomically, via `atomic_write_bytes`.

    Parameters
    ----------
    path : str or pathlib.Path
        Target file; replaced if it exists.
    obj : Any
        JSON-serialisable object. numpy arrays and scalars (anything with `.tolist()`), sets, tuples
        and `pathlib.Path` values are converted to lists and strings.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        When `obj` holds a value that is none of the above and not JSON-serialisable; nothing is
        written then.
    OSError
        When the file cannot be written (see `atomic_write_bytes`).
    """
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
