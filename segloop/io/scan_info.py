"""What a user checks first about a scan: size, voxel spacing, orientation, file type and intensities."""

from __future__ import annotations

import numpy as np

from segloop.io.volume import Volume


def scan_info(volume: Volume) -> dict:
    """Summarise a loaded scan: file geometry and intensity statistics, as plain JSON-ready values.

    Parameters
    ----------
    volume : Volume
        A loaded scan (float32 array in RAS voxel order).

    Returns
    -------
    dict
        ``name``, ``source_path``, ``format`` and ``file_dtype`` (str, "" when unknown);
        ``shape_ras`` and ``source_shape`` (list of 3 int); ``source_orientation`` (str, e.g. "LPS");
        ``spacing_mm`` (list of 3 float, voxel size in mm along the RAS axes, rounded to 4 decimals);
        ``voxels`` (int); ``physical_size_mm`` (list of 3 float, shape x spacing, rounded to 2
        decimals); ``intensity`` (dict of float: ``min``, ``max``, ``p1``, ``p50``, ``p99``, ``mean``,
        in the scan's own units); ``warnings`` (list of str from loading).
    """
    arr = volume.array
    spacing = [round(s, 4) for s in volume.spacing]
    p1, p50, p99 = (float(v) for v in np.percentile(arr, [1, 50, 99]))
    return {
        "name": volume.name,
        "source_path": volume.source_path,
        "format": volume.meta.get("format", ""),
        "file_dtype": volume.meta.get("file_dtype", ""),
        "shape_ras": list(volume.shape),
        "source_shape": list(volume.source_shape),
        "source_orientation": volume.source_orientation,
        "spacing_mm": spacing,
        "voxels": int(arr.size),
        "physical_size_mm": [round(n * s, 2) for n, s in zip(volume.shape, volume.spacing)],
        "intensity": {
            "min": float(arr.min()),
            "max": float(arr.max()),
            "p1": p1,
            "p50": p50,
            "p99": p99,
            "mean": float(arr.mean()),
        },
        "warnings": list(volume.meta.get("warnings", [])),
    }


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def format_info(info: dict) -> str:
    """Format one `scan_info` result as a readable block of text, one aligned "key  value" line per fact.

    Parameters
    ----------
    info : dict
        A result of `scan_info`.

    Returns
    -------
    str
        Lines for scan, file, format, shape, orientation, spacing, physical size, voxel count,
        intensity range and percentiles (numbers with up to 6 significant digits), then one
        "warning" line per loading warning; no trailing newline.
    """
    it = info["intensity"]
    rows = [
        ("scan", info["name"]),
        ("file", info["source_path"]),
        ("format", f"{info['format']} ({info['file_dtype']})"),
        ("shape (RAS)", " x ".join(map(str, info["shape_ras"]))),
        ("file orientation", info["source_orientation"]),
        ("spacing (mm)", " x ".join(_fmt(s) for s in info["spacing_mm"])),
        ("physical size (mm)", " x ".join(_fmt(s) for s in info["physical_size_mm"])),
        ("voxels", f"{info['voxels']:,}"),
        ("intensity min/max", f"{_fmt(it['min'])} / {_fmt(it['max'])}"),
        ("percentiles 1/50/99", f"{_fmt(it['p1'])} / {_fmt(it['p50'])} / {_fmt(it['p99'])}"),
    ]
    rows += [("warning", w) for w in info.get("warnings", [])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
