"""Command line: `python -m segloop COMMAND ...`. Errors end with one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segloop.errors import SegLoopError


def _cmd_train(args: argparse.Namespace) -> int:
    from segloop.datasets import kfold_split, msd_cases
    from segloop.training import TrainConfig, train

    cases = msd_cases(args.data)
    split = kfold_split([c.name for c in cases], args.folds, args.fold, args.seed)
    by_name = {c.name: c for c in cases}
    cfg = TrainConfig(epochs=args.epochs, time_budget_min=args.time_budget, batch_size=args.batch_size,
                      lr=args.lr, val_every=args.val_every, seed=args.seed, augment=not args.no_augment,
                      threads=args.threads, base_checkpoint=args.base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from segloop.atomic_io import atomic_write_json

    atomic_write_json(out / "split.json", {**split.to_dict(), "data": str(Path(args.data).resolve())})
    summary = train(cfg, [by_name[n] for n in split.train], [by_name[n] for n in split.validation], out)
    print(json.dumps(summary))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from segloop.loading import load_scan
    from segloop.scan_info import format_info, scan_info

    infos = [scan_info(load_scan(path)) for path in args.scans]  # a bad file stops with one error line
    print(json.dumps(infos, indent=2) if args.json else "\n\n".join(format_info(i) for i in infos))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segloop", description="SegLoop: 3D segmentation with a human in the loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="show size, spacing, orientation and intensities of scans",
                       description="Load each scan (NIfTI, DICOM folder/.zip, NRRD, MHA/MHD) and print its geometry and "
                                   "intensity statistics. A file that cannot be used ends with one 'error:' line.")
    p.add_argument("scans", nargs="+", metavar="SCAN", help="scan file or DICOM series folder")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train a 3D U-Net on an MSD-style folder",
                       description="Train the 3D U-Net (PyTorch + MONAI) on a Medical Segmentation Decathlon folder. "
                                   "Writes checkpoints (best.pt, last.pt), history.json, split.json and summary.json to --out.")
    p.add_argument("--data", default="../shared/data/msd-hippocampus", help="MSD-style folder with dataset.json, imagesTr/, labelsTr/ (default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    p.add_argument("--folds", type=int, default=5, help="number of folds of the seeded k-fold split (default: %(default)s)")
    p.add_argument("--fold", type=int, default=0, help="which fold is the validation set (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, sampling and augmentation (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=200, help="maximum number of epochs (default: %(default)s)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop after this many minutes; the learning-rate schedule is stretched to end there")
    p.add_argument("--batch-size", type=int, default=8, help="cases per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate, poly-decayed (default: %(default)s)")
    p.add_argument("--val-every", type=int, default=10, help="validate every N epochs; the best checkpoint by mean Dice is kept (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--base", default=None, help="checkpoint (.pt) to fine-tune from instead of random weights")
    p.add_argument("--no-augment", action="store_true", help="turn off spatial and intensity augmentation")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegLoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
