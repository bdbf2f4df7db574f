"""Settings read from the environment, with defaults that work on a fresh machine."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"

#: Largest scan accepted, in voxels (default 512**3 = 134 M voxels, about 0.5 GB as float32).
DEFAULT_MAX_VOXELS = 512**3


def max_voxels() -> int:
    """Return the voxel limit for one scan; guards the app against absurd or hostile uploads.

    Returns
    -------
    int
        The SEGLOOP_MAX_VOXELS environment variable, else `DEFAULT_MAX_VOXELS` (512**3). Read on every
        call, so a changed environment takes effect at once.

    Raises
    ------
    ValueError
        When SEGLOOP_MAX_VOXELS is set but is not a whole number.
    """
    return int(os.environ.get("SEGLOOP_MAX_VOXELS", DEFAULT_MAX_VOXELS))


def data_dir() -> Path | None:
    """Return the folder of scans named by SEGLOOP_DATA_DIR, or None when unset.

    Returns
    -------
    pathlib.Path or None
        The absolute path (``~`` expanded, resolved); None when the variable is unset or blank.
        Whether the folder exists is not checked.
    """
    value = os.environ.get("SEGLOOP_DATA_DIR", "").strip()
    return Path(value).expanduser().resolve() if value else None


def workspace_dir() -> Path:
    """Return where SegLoop writes its database, label versions and models.

    SEGLOOP_WORKSPACE wins; else `/data/segloop` when `/data` exists (a Hugging Face Space's
    persistent volume); else `~/.segloop`.

    Returns
    -------
    pathlib.Path
        The workspace folder: SEGLOOP_WORKSPACE expanded and resolved; else ``/data/segloop`` when
        ``/data`` is a writable folder; else ``~/.segloop``. The folder is not created here
        (`segloop.store.database.Datastore` creates it).
    """
    value = os.environ.get("SEGLOOP_WORKSPACE", "").strip()
    if value:
        return Path(value).expanduser().resolve()
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/segloop")
    return Path.home() / ".segloop"


def shared_data_dir() -> Path:
    """Return the project's real test data folder (`../shared/data` beside the checkout).

    Returns
    -------
    pathlib.Path
        SEGLOOP_SHARED_DATA resolved when set (``~`` is not expanded), else
        ``<PROJECT_ROOT>/../shared/data``. Whether the folder exists is not checked.
    """
    value = os.environ.get("SEGLOOP_SHARED_DATA", "").strip()
    return Path(value).resolve() if value else (PROJECT_ROOT.parent / "shared" / "data")
