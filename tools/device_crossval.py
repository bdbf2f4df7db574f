"""Run SegLoop's 5-fold cross-validation on a borrowed GPU machine and bring the results back.

The GPU machine this project is sometimes lent (the workplace's `device` tool) starts bare, reaches no
network, runs one command of at most 10 minutes, and returns at most 8 files of 16 MiB from `$OUT`.
Its Python has PyTorch, numpy, scipy, scikit-image, onnx and ONNX Runtime but not MONAI or nibabel,
and the working tree that travels is limited to 64 MiB, so SimpleITK (52 MB) cannot come along: this
script imports only what training and scoring need (`segloop.training.crossval`), not the command line.

Here, once (the two folders are git-ignored through .git/info/exclude)::

    echo /.whl/ >> .git/info/exclude; echo /.devdata/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl monai==1.6.1 nibabel==5.4.2
    mkdir -p .devdata && cp -r ../shared/data/msd-hippocampus .devdata/

On the device (`run` with carry [".whl", ".devdata"]; `runs/` stays on a warm machine between calls, so
a second call continues paused folds)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 tools/device_crossval.py \
        --data .devdata/msd-hippocampus --cv runs/cv --out "$OUT"

It trains the folds and, beside them, the model to ship: the same recipe on every case (``--refit``).
Back here, rebuild the cross-validation folder from the fetched files and finish it (every run is
already trained and every fold scored, so nothing is recomputed), then export the model to ship, whose
card carries the cross-validation figures::

    python tools/device_crossval.py --unpack FILES_AT --cv runs/cv
    python -m segloop cv .devdata/msd-hippocampus --out runs/cv --refit
    python -m segloop export --run runs/cv/all --checkpoint runs/cv/all/last.pt --out weights/NAME.onnx --version 2
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Files that come back: one final-epoch checkpoint per fold plus one archive of everything small.
SMALL_ARCHIVE = "cv_small.tar.gz"
HEAVY_SUFFIXES = (".pt", ".onnx")


def pack(cv: Path, out: Path) -> list[Path]:
    """Copy a cross-validation folder's results into `out` as at most 8 files.

    Parameters
    ----------
    cv : pathlib.Path
        The cross-validation folder (`segloop.training.crossval.run_crossval`'s ``out_dir``).
    out : pathlib.Path
        Destination folder (the device's ``$OUT``).

    Returns
    -------
    list of pathlib.Path
        ``fold_<k>_last.pt`` for every fold that has one, ``all_last.pt`` for the model trained on
        every case, and `SMALL_ARCHIVE` holding every file of
        `cv` except checkpoints and ONNX models (configs, histories, summaries, held-out scores,
        the splits and the tables).
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for last in sorted(cv.glob("fold_*/last.pt")) + sorted(cv.glob("all/last.pt")):
        target = out / f"{last.parent.name}_last.pt"
        shutil.copyfile(last, target)
        written.append(target)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(cv.rglob("*")):
            if f.is_file() and f.suffix not in HEAVY_SUFFIXES:
                tar.add(f, arcname=str(f.relative_to(cv)))
    (out / SMALL_ARCHIVE).write_bytes(buf.getvalue())
    return written + [out / SMALL_ARCHIVE]


def unpack(files: Path, cv: Path) -> None:
    """Rebuild a cross-validation folder from what `pack` wrote (the opposite of `pack`).

    Parameters
    ----------
    files : pathlib.Path
        Folder holding `SMALL_ARCHIVE` and the ``fold_<k>_last.pt`` (and ``all_last.pt``) files.
    cv : pathlib.Path
        The cross-validation folder to (re)create; existing files are replaced.
    """
    cv.mkdir(parents=True, exist_ok=True)
    with tarfile.open(files / SMALL_ARCHIVE, "r:gz") as tar:
        tar.extractall(cv, filter="data")
    for last in sorted(files.glob("fold_*_last.pt")) + sorted(files.glob("all_last.pt")):
        fold = last.name[: -len("_last.pt")]
        (cv / fold).mkdir(exist_ok=True)
        shutil.copyfile(last, cv / fold / "last.pt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="MSD-style folder of labelled cases")
    ap.add_argument("--cv", type=Path, required=True, help="cross-validation folder (kept between calls)")
    ap.add_argument("--out", type=Path, help="where the results to bring back go ($OUT)")
    ap.add_argument("--minutes", type=float, default=7.0, help="wall time of this call's training (default: 7)")
    ap.add_argument("--budget", type=float, default=6.0,
                    help="training minutes per fold: the learning-rate schedule ends there "
                         "(default: 6; scoring the folds takes about 2 more)")
    ap.add_argument("--epochs", type=int, default=1000, help="upper bound on epochs (default: 1000)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=6, help="runs trained at once: the folds and the model on every "
                    "case (default: 6)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-cases", type=int, default=None, help="a quick check of the pipeline only")
    ap.add_argument("--unpack", type=Path, default=None, help="rebuild --cv from these fetched files and stop")
    args = ap.parse_args(argv)
    if args.unpack:
        unpack(args.unpack, args.cv)
        print(f"rebuilt {args.cv} from {args.unpack}")
        return 0

    from segloop.training.crossval import run_crossval
    from segloop.training.loop import TrainConfig

    import torch

    if args.device.startswith("cuda"):
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    # the recipe: the shipped one (MONAI UNet, batch 8, patch 48x64x48, Dice+CE, AdamW, poly decay) with
    # the augmentation on the GPU, bfloat16 and a schedule that ends at the time budget
    cfg = TrainConfig(epochs=args.epochs, time_budget_min=args.budget, augmentation="batched", amp=True,
                      device=args.device, val_every=25)
    t0 = time.perf_counter()
    result = run_crossval(args.data, args.cv, cfg, n_folds=args.folds, seed=0, resume=True,
                          session_minutes=args.minutes, max_cases=args.max_cases, jobs=args.jobs, refit=True,
                          log=lambda line: print(line, flush=True))
    print(f"{result['state']} in {time.perf_counter() - t0:.0f} s; folds done: {result['folds_done']}", flush=True)
    if result["state"] == "finished":
        print(result["table"], flush=True)
    if args.out:
        for f in pack(args.cv, args.out):
            print(f"to bring back: {f.name} ({f.stat().st_size / 1e6:.1f} MB)")
    return 0 if result["state"] == "finished" else 3


if __name__ == "__main__":
    raise SystemExit(main())
