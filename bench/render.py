"""Benchmark: SegLoop's PNG slice renderer vs the naive float-heatmap path.

Data: the MNI152 T1 1 mm template shipped inside nilearn (a real brain scan, no download), one
axial slice resampled (linear) to 256x256 and 512x512, with a synthetic two-label blob (an
ellipsoid split into "anterior"/"posterior") as the overlay. Both paths draw the same slice with
the same labels; the naive path is `px.imshow` of the float32 slice plus a label heatmap trace.

Measured server-side: figure build + `fig.to_json()` (median of N runs, ms) and payload bytes
(len of the JSON). The last line printed is one JSON object with the figures and ratios.

Run: .venv/bin/python bench/render.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plotly.express as px  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from scipy.ndimage import zoom  # noqa: E402

from segloop.display import planes, render  # noqa: E402
from segloop.display.windowing import auto_window  # noqa: E402


def make_volume(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of shape (size, size, 3) in RAS order from the MNI152 template."""
    from nilearn.datasets import load_mni152_template

    mni = np.asarray(load_mni152_template(resolution=1).dataobj, dtype=np.float32)
    slab = mni[:, :, mni.shape[2] // 2 - 1 : mni.shape[2] // 2 + 2]
    image = zoom(slab, (size / slab.shape[0], size / slab.shape[1], 1), order=1).astype(np.float32)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in image.shape), indexing="ij")
    blob = ((x - 0.25) / 0.12) ** 2 + ((y + 0.1) / 0.3) ** 2 < 1
    labels = np.where(blob, np.where(y > -0.1, 1, 2), 0).astype(np.uint8)
    return image, labels


def naive_json(image: np.ndarray, labels: np.ndarray) -> str:
    sl = planes.slice_view(image, "axial", 1)
    lab = planes.slice_view(labels, "axial", 1).astype(np.float32)
    fig = px.imshow(sl, color_continuous_scale="gray")
    fig.add_trace(go.Heatmap(z=np.where(lab > 0, lab, np.nan), opacity=0.5, showscale=False, colorscale="Jet"))
    return fig.to_json()


def ours_json(image: np.ndarray, labels: np.ndarray, center: float, width: float) -> str:
    fig = render.build_slice_figure(
        image, labels, "axial", 1, spacing=(1.0, 1.0, 1.0), center=center, width=width,
        affine=np.eye(4), label_names={1: "anterior", 2: "posterior"},
    )
    return fig.to_json()


def timed(fn, runs: int) -> tuple[float, int]:
    times, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    result: dict = {"data": "MNI152 T1 1mm (nilearn) axial slice resampled + synthetic 2-label blob", "runs": args.runs}
    print(f"{'size':>8} {'path':>6} {'build+json ms':>14} {'payload bytes':>14}")
    for size in (256, 512):
        image, labels = make_volume(size)
        center, width = auto_window(image)
        naive_ms, naive_bytes = timed(lambda: naive_json(image, labels), max(5, args.runs // 3))
        ours_ms, ours_bytes = timed(lambda: ours_json(image, labels, center, width), args.runs)
        print(f"{size:>4}x{size:<3} {'naive':>6} {naive_ms:>14.1f} {naive_bytes:>14,}")
        print(f"{size:>4}x{size:<3} {'ours':>6} {ours_ms:>14.1f} {ours_bytes:>14,}")
        result[str(size)] = {
            "naive_ms": round(naive_ms, 2),
            "ours_ms": round(ours_ms, 2),
            "naive_bytes": naive_bytes,
            "ours_bytes": ours_bytes,
            "time_ratio": round(naive_ms / ours_ms, 1),
            "payload_ratio": round(naive_bytes / ours_bytes, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
