"""Settings read from the environment, with defaults that work on a fresh machine."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"

#: Largest scan accepted, in voxels (default 512**3 = 134 M voxels, about 0.5 GB as float32).
DEFAULT_MAX_VOXELS = 512**3


def max_voxels() -> int:
    """Voxel limit for one scan; guards the app against absurd or hostile uploads."""
    return int(os.environ.get("SEGLOOP_MAX_VOXELS", DEFAULT_MAX_VOXELS))


def data_dir() -> Path | None:
    """Folder of scans named by SEGLOOP_DATA_DIR, or None when unset."""
    value = os.environ.get("SEGLOOP_DATA_DIR", "").strip()
    return Path(value).expanduser().resolve() if value else None


def workspace_dir() -> Path:
    """Where SegLoop writes its database, label versions and models.

    SEGLOOP_WORKSPACE wins; else `/data/segloop` when `/data` exists (a Hugging Face Space's
    persistent volume); else `~/.segloop`.
    """
    value = os.environ.get("SEGLOOP_WORKSPACE", "").strip()
    if value:
        return Path(value).expanduser().resolve()
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/segloop")
    return Path.home() / ".segloop"


def shared_data_dir() -> Path:
    """The project's real test data (`../shared/data` beside the checkout), configurable by SEGLOOP_SHARED_DATA."""
    value = os.environ.get("SEGLOOP_SHARED_DATA", "").strip()
    return Path(value).resolve() if value else (PROJECT_ROOT.parent / "shared" / "data")
