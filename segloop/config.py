"""Settings read from the environment, with defaults that work on a fresh machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _weights_dir() -> Path:
    """The shipped model's folder: `weights/` of a checkout (or editable install), else the copy that
    `pip install` puts in `<prefix>/share/segloop/weights`; SEGLOOP_WEIGHTS_DIR overrides both."""
    value = os.environ.get("SEGLOOP_WEIGHTS_DIR", "").strip()
    if value:
        return Path(value).expanduser().resolve()
    checkout = PROJECT_ROOT / "weights"
    installed = Path(sys.prefix) / "share" / "segloop" / "weights"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


WEIGHTS_DIR = _weights_dir()

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


def workspace_choice() -> tuple[Path, str]:
    """Return where SegLoop writes its database, label versions and models, and why there.

    SEGLOOP_WORKSPACE wins; else `/data/segloop` when `/data` is a writable folder (a Hugging Face
    Space's persistent storage); else `~/.segloop`. A `/data` that exists but is not writable is named
    in the reason, since that silently loses work when a Space restarts.

    Returns
    -------
    path : pathlib.Path
        The workspace folder (not created here; `segloop.store.database.Datastore` creates it).
    reason : str
        One sentence for logs and the `doctor` report.
    """
    value = os.environ.get("SEGLOOP_WORKSPACE", "").strip()
    if value:
        return Path(value).expanduser().resolve(), "set by SEGLOOP_WORKSPACE"
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "segloop", "/data is writable (persistent storage)"
    home = Path.home() / ".segloop"
    if data.is_dir():
        return home, ("/data exists but this user cannot write to it, so the workspace is in the home folder "
                      "and is lost when the container restarts; make /data writable or set SEGLOOP_WORKSPACE")
    return home, "no /data folder and no SEGLOOP_WORKSPACE: the home folder"


def workspace_dir() -> Path:
    """Return where SegLoop writes its database, label versions and models (see `workspace_choice`)."""
    return workspace_choice()[0]


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
