"""Real whole heads: time per step, the quality check's margin, and agreement with a peer tool's masks.

Scans: the real whole-head T1 scans of ``<shared>/realheads-dev/scans`` (five scanners and sites,
0.7-2 mm, 3 mm slices, five orientations, long necks, defaced). For each one:

- the SegLoop path as `python -m segloop predict` runs it, timed per step (load, register, segment each
  side, save), plus one `python -m segloop predict` process per scan, start to exit (what a researcher
  running the command waits for);
- the quality check: the verdict and match of the registration found, and of the same scan deliberately
  misregistered (8-15 mm shifts, 10-20 degree rotations, 15 % scale), whose highest match is the margin's
  other side;
- agreement with the peer tool (hippodeep) where it is defined: Dice per side of SegLoop's labels
  (anterior + posterior) against the peer's mask, and the volume ratio SegLoop / peer. The peer's label
  definition is not the Decathlon's (its hippocampi are 10-25 % larger), so Dice tops out near 0.85
  even when both are right, and a ratio of about 0.8-0.9 is agreement.

These scans chose the quality check's thresholds (`segloop.wholehead.registration.ACCEPT_QUALITY`), so the
margin printed here describes them; it is not an estimate on unseen heads.

Usage: python bench/realheads.py [--data ../shared/data/realheads-dev] [--no-process]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segloop.config import shared_data_dir  # noqa: E402
from segloop.io.readers import load_label, load_scan  # noqa: E402
from segloop.io.writers import save_label  # noqa: E402
from segloop.model.metrics import dice_per_label  # noqa: E402
from segloop.wholehead.registration import assess, register_to_template  # noqa: E402
from segloop.wholehead.segment import segment_whole_head  # noqa: E402


def _rigid(deg: float, axis: int, shift) -> np.ndarray:
    th = np.deg2rad(deg)
    c, s = np.cos(th), np.sin(th)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(4)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    about = np.array([0.0, -18.0, 18.0])  # the template brain's centre, MNI mm
    m[:3, 3] = about - m[:3, :3] @ about + np.asarray(shift, float)
    return m


WRONG = {"8 mm x": _rigid(0, 2, (8, 0, 0)), "15 mm x": _rigid(0, 2, (15, 0, 0)), "8 mm y": _rigid(0, 2, (0, 8, 0)),
         "15 mm y": _rigid(0, 2, (0, -15, 0)), "10 mm z": _rigid(0, 2, (0, 0, 10)), "10 deg pitch": _rigid(10, 0, 0),
         "20 deg pitch": _rigid(-20, 0, 0), "10 deg yaw": _rigid(10, 2, 0), "20 deg roll": _rigid(20, 1, 0),
         "15 % smaller": np.diag([0.85, 0.85, 0.85, 1.0]), "15 % larger": np.diag([1.15, 1.15, 1.15, 1.0])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(shared_data_dir() / "realheads-dev"))
    parser.add_argument("--no-process", action="store_true", help="skip timing one predict process per scan")
    args = parser.parse_args(argv)
    data = Path(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((data / "scans").glob("*.nii.gz")):
            name = path.name.removesuffix(".nii.gz")
            t0 = time.perf_counter()
            vol = load_scan(path)
            t_load = time.perf_counter() - t0
            reg = register_to_template(vol.array, vol.affine)
            seg = segment_whole_head(vol, registration=reg)
            t0 = time.perf_counter()
            save_label(seg.labels, vol, Path(tmp) / f"{name}.nii.gz")
            t_save = time.perf_counter() - t0
            wrong = {k: assess(vol.array, vol.affine, m @ reg.scan_to_mni) for k, m in WRONG.items()}
            row = {"scan": name, "voxel_mm": [round(float(v), 2) for v in vol.spacing], "verdict": str(seg.verdict),
                   "quality": round(reg.quality, 3),
                   "wrong_max_quality": round(max(w.quality for w in wrong.values()), 3),
                   "wrong_refused": sum(w.verdict == "refuse" for w in wrong.values()), "wrong_total": len(wrong),
                   "seconds": {"load": round(t_load, 3), **{k: round(v, 3) for k, v in seg.timings.items()},
                               "save": round(t_save, 3)}}
            fg = seg.labels > 0
            for side, tag in (("left", "L"), ("right", "R")):
                peer = load_label(data / "peer-masks" / f"{name}_mask_{tag}.nii.gz", reference=vol).array > 0
                box = np.zeros_like(fg)
                # SegLoop's labels of this side: those within the peer mask's neighbourhood (the other side is far)
                lo = np.maximum(np.argwhere(peer).min(0) - 15, 0)
                hi = np.argwhere(peer).max(0) + 16
                box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
                ours = fg & box
                row[f"{side}_dice"] = round(float(dice_per_label(ours.astype(np.uint8), peer.astype(np.uint8), [1])[1]), 3)
                row[f"{side}_volume_ratio"] = round(float(ours.sum() * np.prod(vol.spacing)) /
                                                    float(peer.sum() * np.prod(vol.spacing)), 3)
            if not args.no_process:
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "segloop", "predict", str(path), "--out", tmp], check=True,
                               capture_output=True, cwd=ROOT)
                row["process_seconds"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    good = min(r["quality"] for r in rows)
    bad = max(r["wrong_max_quality"] for r in rows)
    summary = {
        "scans": len(rows),
        "accepted": sum(r["verdict"] == "accept" for r in rows),
        "correct_quality_min": good, "misregistered_quality_max": bad, "margin": round(good - bad, 3),
        "misregistered_refused": f"{sum(r['wrong_refused'] for r in rows)}/{sum(r['wrong_total'] for r in rows)}",
        "dice_median": round(float(np.median([r[f"{s}_dice"] for r in rows for s in ("left", "right")])), 3),
        "volume_ratio_by_scan": {r["scan"]: round((r["left_volume_ratio"] + r["right_volume_ratio"]) / 2, 3) for r in rows},
        "seconds_median_in_process": round(float(np.median([sum(r["seconds"].values()) for r in rows])), 2),
        "process_seconds_median": (round(float(np.median([r["process_seconds"] for r in rows])), 2)
                                   if not args.no_process else None),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
