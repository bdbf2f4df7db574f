"""Cohort throughput: one sequential `predict` process vs the batch command's local engine vs Ray, same scans.

Inputs: --crops MSD hippocampus crops and --heads synthetic whole heads (segloop.data.phantom: the
MNI152 template in a skull on a neck, random pose, 1.0-1.5 mm voxels, bias field, noise), written to a
temporary folder as NIfTI. Every configuration runs as the user runs it, as a fresh command, so the
wall time includes Python start-up, model loading and (for Ray) starting a local Ray:

- `python -m segloop predict` on all scans: one process, ONNX Runtime and ITK on every core;
- `python -m segloop batch --workers 1`: one worker process with every core (isolates the batch
  machinery's own cost from parallelism);
- `python -m segloop batch --workers W`: W worker processes x (cores / W) threads;
- `python -m segloop batch --engine ray --workers W`: a local Ray with the cores, W actors.

Besides the end-to-end wall time, the steady-state rate of each batch run is read from its status
records (scans / (last finish - first start)), with the median wall time per crop and per whole head
(read, segment, write) in that configuration, and the whole-head steps from the fastest single-worker run:
the figures docs/scaling.md extrapolates from.

Usage: .venv/bin/python bench/batch.py [--crops 20] [--heads 4] [--workers 2] [--repeats 1] [--no-ray]
With --repeats R every configuration runs R times, round robin; the table shows each configuration's
fastest run (on a shared machine the slower ones measure the neighbours), the JSON all wall times.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segloop.batch.records import read_all  # noqa: E402
from segloop.batch.worker import usable_cores  # noqa: E402
from segloop.config import shared_data_dir  # noqa: E402
from segloop.data.phantom import make_scan, random_scan_to_mni  # noqa: E402

SPACINGS = [(1.0, 1.0, 1.0), (1.2, 1.2, 1.2), (1.5, 1.5, 1.5), (1.0, 1.0, 1.3)]


def make_inputs(folder: Path, crops: int, heads: int, seed: int) -> list[Path]:
    msd = shared_data_dir() / "msd-hippocampus" / "imagesTr"
    paths = []
    for src in sorted(msd.glob("hippocampus_*.nii.gz"))[:crops]:
        shutil.copy(src, folder / src.name)
        paths.append(folder / src.name)
    rng = np.random.default_rng(seed)
    for i in range(heads):
        array, affine = make_scan(random_scan_to_mni(rng), rng, spacing=SPACINGS[i % len(SPACINGS)])
        path = folder / f"head_{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), str(path))
        paths.append(path)
    return paths


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - t0, res


def steady_rate(out: Path) -> tuple[float, float]:
    """(scans/s between the first start and the last finish, seconds from launch to the first finish)."""
    records = read_all(out)
    span = max(r["finished"] for r in records) - min(r["started"] for r in records)
    return len(records) / span if span > 0 else float("nan"), min(r["finished"] for r in records)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=20)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each configuration; the fastest is reported")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = ap.parse_args()
    cores = usable_cores()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="segloop-bench-batch-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs"
        inputs.mkdir()
        paths = make_inputs(inputs, args.crops, args.heads, args.seed)
        for p in paths:  # page cache warm for every configuration alike
            p.read_bytes()
        n = len(paths)
        print(f"{n} scans ({args.crops} MSD crops + {args.heads} synthetic whole heads), {cores} cores, "
              f"{os.uname().machine}, Python {sys.version.split()[0]}")
        configs = [("predict, 1 process", None, 1), ("batch local, 1 worker", ["--workers", "1"], 1),
                   (f"batch local, {args.workers} workers", ["--workers", str(args.workers)], args.workers)]
        if not args.no_ray and importlib.util.find_spec("ray") is not None:
            configs.append((f"batch ray (local Ray), {args.workers} actors",
                            ["--engine", "ray", "--workers", str(args.workers)], args.workers))
        elif not args.no_ray:
            print("ray: not installed (pip install 'ray[data]'); skipped")
        samples: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
        per_scan: dict = {}
        for rep in range(args.repeats):  # round robin, so a busy spell of the machine hits every configuration
            for label, extra, workers in configs:
                out = tmp / f"run{rep}" / label.split(",")[0].replace(" ", "_") / str(workers)
                if extra is None:
                    seconds, res = timed([py, "-m", "segloop", "predict", *map(str, paths), "--out", str(out)])
                    assert res.returncode == 0, res.stderr
                    samples[label].append({"wall_s": seconds})
                    continue
                launch = time.time()
                seconds, res = timed([py, "-m", "segloop", "batch", str(inputs), "--out", str(out), "--no-progress",
                                      *extra])
                assert res.returncode == 0, res.stderr
                rate, first = steady_rate(out)
                records = read_all(out)
                sample = {"wall_s": seconds, "steady_scans_per_s": rate, "first_result_after_s": first - launch}
                for kind, key in (("crop", "crop_s_median"), ("whole head", "whole_head_s_median")):
                    times = [r["seconds"] for r in records if r["kind"] == kind]
                    if times:
                        sample[key] = statistics.median(times)
                samples[label].append(sample)
                if workers == 1 and seconds <= min(x["wall_s"] for x in samples[label]):  # the best run's
                    crops = [r for r in records if r["kind"] == "crop"]
                    heads = [r for r in records if r["kind"] == "whole head"]
                    per_scan = {"crop_s_median": statistics.median(r["seconds"] for r in crops) if crops else None,
                                "whole_head_s_median": statistics.median(r["seconds"] for r in heads)
                                if heads else None,
                                "whole_head_steps_s_median": {k: statistics.median(r["timings"][k] for r in heads)
                                                              for k in heads[0]["timings"]} if heads else {},
                                "label_bytes_crop_median": statistics.median(
                                    Path(r["output"]).stat().st_size for r in crops) if crops else None,
                                "label_bytes_head_median": statistics.median(
                                    Path(r["output"]).stat().st_size for r in heads) if heads else None,
                                "input_bytes_head_median": statistics.median(r["input_bytes"] for r in heads)
                                if heads else None,
                                "threads": cores}
        runs = []
        for label, _, workers in configs:
            run = {"config": label, "workers": workers, "threads": cores if label.startswith("predict")
                   else max(1, cores // workers)}
            best = min(samples[label], key=lambda s: s["wall_s"])  # the run least disturbed by other load
            run.update(best)
            run["wall_s_median"] = statistics.median(s["wall_s"] for s in samples[label])
            run["wall_s_all"] = [round(s["wall_s"], 2) for s in samples[label]]
            runs.append(run)

    base = runs[0]["wall_s"]
    print(f"\nbest of {args.repeats} run(s) each (the other figures are from that run; wall medians in the JSON)")
    print(f"{'configuration':<38} {'wall s':>7} {'scans/s':>8} {'x predict':>9} {'steady scans/s':>15} "
          f"{'1st result s':>13} {'crop s':>7} {'head s':>7}")
    for r in runs:
        r["scans_per_s"] = n / r["wall_s"]
        r["speedup_vs_predict"] = base / r["wall_s"]
        steady = f"{r['steady_scans_per_s']:.2f}" if "steady_scans_per_s" in r else "-"
        first = f"{r['first_result_after_s']:.1f}" if "first_result_after_s" in r else "-"
        crop = f"{r['crop_s_median']:.3f}" if r.get("crop_s_median") else "-"
        head = f"{r['whole_head_s_median']:.2f}" if r.get("whole_head_s_median") else "-"
        print(f"{r['config']:<38} {r['wall_s']:7.1f} {r['scans_per_s']:8.2f} {r['speedup_vs_predict']:8.2f}x "
              f"{steady:>15} {first:>13} {crop:>7} {head:>7}")
    print(f"\nper scan, 1 worker with {cores} threads: crop median {per_scan.get('crop_s_median', 0):.3f} s, "
          f"whole head "
          f"median {per_scan.get('whole_head_s_median') or 0:.2f} s "
          f"({', '.join(f'{k} {v:.2f} s' for k, v in per_scan.get('whole_head_steps_s_median', {}).items())})")
    result = {"scans": n, "crops": args.crops, "heads": args.heads, "cores": cores,
              "repeats": args.repeats,
              "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
              "per_scan": {k: (round(v, 4) if isinstance(v, float) else
                               {kk: round(vv, 4) for kk, vv in v.items()} if isinstance(v, dict) else v)
                           for k, v in per_scan.items()}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
