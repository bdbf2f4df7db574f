"""Benchmark: SegLoop's PNG slice renderer vs Plotly's own PNG path (the baseline) and the float heatmap.

Data: the MNI152 T1 1 mm template shipped inside nilearn (a real brain scan, no download), one
axial slice resampled (linear) to 256x256 and 512x512, with a synthetic two-label blob (an
ellipsoid split into "anterior"/"posterior") as the overlay. Every path draws the same slice with
the same labels:

- baseline: Plotly's own PNG encoding, `px.imshow(slice, binary_string=True)` windowed by Plotly
  (zmin/zmax), plus the labels as a second `px.imshow(rgba, binary_string=True)` image trace;
- float heatmap: `px.imshow` of the float32 slice plus a label heatmap trace (what a first
  attempt sends);
- SegLoop: `segloop.display.render.build_slice_figure`.

Measured server-side: figure build + `fig.to_json()` (median of N runs, ms) and payload bytes
(len of the JSON). The last line printed is one JSON object with the figures and ratios; its
"baseline_*" keys and the ratios "*_vs_baseline" are against `px.imshow(binary_string=True)`.

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


def baseline_json(image: np.ndarray, labels: np.ndarray, center: float, width: float) -> str:
    """Plotly's own PNG path: the slice and a coloured RGBA label image, each `px.imshow(binary_string=True)`."""
    sl = planes.slice_view(image, "axial", 1)
    lab = planes.slice_view(labels, "axial", 1)
    fig = px.imshow(sl, binary_string=True, zmin=center - width / 2, zmax=center + width / 2)
    rgba = np.zeros(lab.shape + (4,), np.uint8)
    for value in (1, 2):
        rgba[lab == value] = (*(int(render.label_color(value)[i : i + 2], 16) for i in (1, 3, 5)), 128)
    fig.add_trace(px.imshow(rgba, binary_string=True).data[0])
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
    result["baseline"] = "px.imshow(slice, binary_string=True) + px.imshow(label RGBA, binary_string=True)"
    print(f"{'size':>8} {'path':>34} {'build+json ms':>14} {'payload bytes':>14}")
    for size in (256, 512):
        image, labels = make_volume(size)
        center, width = auto_window(image)
        naive_ms, naive_bytes = timed(lambda: naive_json(image, labels), max(5, args.runs // 3))
        base_ms, base_bytes = timed(lambda: baseline_json(image, labels, center, width), args.runs)
        ours_ms, ours_bytes = timed(lambda: ours_json(image, labels, center, width), args.runs)
        for path, ms, nbytes in (("px.imshow float + heatmap", naive_ms, naive_bytes),
                                 ("baseline px.imshow binary_string", base_ms, base_bytes),
                                 ("SegLoop build_slice_figure", ours_ms, ours_bytes)):
            print(f"{size:>4}x{size:<3} {path:>34} {ms:>14.1f} {nbytes:>14,}")
        print(f"{'':8} SegLoop vs baseline: {base_ms / ours_ms:.1f}x time, {base_bytes / ours_bytes:.1f}x payload; "
              f"vs float heatmap: {naive_ms / ours_ms:.1f}x time, {naive_bytes / ours_bytes:.1f}x payload")
        result[str(size)] = {
            "baseline_ms": round(base_ms, 2),
            "baseline_bytes": base_bytes,
            "naive_ms": round(naive_ms, 2),
            "naive_bytes": naive_bytes,
            "ours_ms": round(ours_ms, 2),
            "ours_bytes": ours_bytes,
            "time_ratio_vs_baseline": round(base_ms / ours_ms, 1),
            "payload_ratio_vs_baseline": round(base_bytes / ours_bytes, 1),
            "time_ratio": round(naive_ms / ours_ms, 1),  # vs the float heatmap (naive)
            "payload_ratio": round(naive_bytes / ours_bytes, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
