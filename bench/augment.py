"""Training augmentation: MONAI's transforms one case at a time (the shipped recipe) against the same
transforms on the whole batch (`segloop.training.augment.augment_batch`), on the CPU and, where torch
sees one, on a GPU. Real Decathlon crops placed in the training patch, batch 8.

    python bench/augment.py [--data ../shared/data/msd-hippocampus] [--batches 20]

Last line: one JSON object (milliseconds per batch of 8, median over the batches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from segloop.config import shared_data_dir
from segloop.data.splits import msd_cases
from segloop.training.augment import augment_batch
from segloop.training.loop import TrainConfig, _augmenter, _place_in_patch, load_case_arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data or shared_data_dir() / "msd-hippocampus"
    cases = msd_cases(data)[:16]
    arrays = [load_case_arrays(c) for c in cases]
    patch = TrainConfig().patch
    rng = np.random.default_rng(0)
    batches = []
    for b in range(args.batches):
        pick = [arrays[(b * 8 + k) % len(arrays)] for k in range(8)]
        pairs = [_place_in_patch(im, lb, patch, rng) for im, lb in pick]
        batches.append((np.stack([p[0][None] for p in pairs]), np.stack([p[1][None] for p in pairs]).astype(np.float32)))

    aug = _augmenter(patch, 0)
    monai_ms = []
    for im, lb in batches:
        t0 = time.perf_counter()
        for k in range(len(im)):
            d = aug({"image": im[k], "label": lb[k]})
            np.asarray(d["image"]), np.asarray(d["label"])
        monai_ms.append((time.perf_counter() - t0) * 1e3)
    result = {"batch": 8, "patch": list(patch), "cases": len(cases), "threads": args.threads,
              "monai_per_case_cpu_ms": round(statistics.median(monai_ms), 1)}

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        times = []
        for i, (im, lb) in enumerate(batches):
            x, y = torch.from_numpy(im).to(dev), torch.from_numpy(lb).to(dev)
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            augment_batch(x, y, np.random.default_rng(i))
            if dev == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        result[f"batched_{dev}_ms"] = round(statistics.median(times[1:] or times), 1)
    print(f"MONAI, one case at a time, CPU: {result['monai_per_case_cpu_ms']} ms per batch of 8")
    for dev in devices:
        print(f"batched, {dev}: {result[f'batched_{dev}_ms']} ms per batch of 8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
