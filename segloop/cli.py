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
    from segloop.network import DEFAULT_ARCHITECTURE

    arch = dict(DEFAULT_ARCHITECTURE)
    if args.channels:
        arch["channels"] = [int(c) for c in args.channels.split(",")]
        arch["strides"] = [2] * (len(arch["channels"]) - 1)
    if args.res_units is not None:
        arch["num_res_units"] = args.res_units
    cfg = TrainConfig(architecture=arch, epochs=args.epochs, time_budget_min=args.time_budget, batch_size=args.batch_size,
                      lr=args.lr, val_every=args.val_every, seed=args.seed, augment=not args.no_augment,
                      threads=args.threads, base_checkpoint=args.base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from segloop.atomic_io import atomic_write_json

    atomic_write_json(out / "split.json", {**split.to_dict(), "data": str(Path(args.data).resolve())})
    summary = train(cfg, [by_name[n] for n in split.train], [by_name[n] for n in split.validation], out)
    print(json.dumps(summary))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from segloop.inference import default_model_path, predict
    from segloop.loading import load_scan, scan_name
    from segloop.saving import save_label

    model = Path(args.model) if args.model else default_model_path()
    out = Path(args.out)
    names = [scan_name(p) for p in args.images]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SegLoopError(f"several inputs share the output name {sorted(dupes)[0]}.nii.gz")
    for path in args.images:  # validate every input before writing anything
        load_scan(path)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        vol = load_scan(path)
        pred = predict(vol, model, largest_component=not args.no_postprocess)
        target = save_label(pred.labels, vol, out / f"{vol.name}.nii.gz")
        for w in pred.warnings:
            print(f"warning: {vol.name}: {w}", file=sys.stderr)
        results.append({"image": str(path), "output": str(target), "seconds": round(pred.seconds, 4),
                        "provider": pred.provider, "foreground_voxels": int((pred.labels > 0).sum()),
                        "mean_foreground_uncertainty": round(pred.mean_foreground_uncertainty, 4)})
        if not args.json:
            print(f"{vol.name}: {target} ({pred.seconds * 1000:.0f} ms, {pred.provider})")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"provider note: {pred.provider_note}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from segloop.evaluation import evaluate_folders

    result = evaluate_folders(args.pred_dir, args.ref_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['cases']} cases")
    for k in result["labels"]:
        d, h = result["mean"]["dice"][k], result["mean"]["hd95"][k]
        print(f"label {k}: Dice {d['mean']:.4f} +/- {d['std']:.4f}   HD95 {h['mean']:.2f} mm (n={h['n']})")
    if result["missing_reference"]:
        print(f"no reference for: {', '.join(result['missing_reference'])}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from segloop.export import export_run

    card = export_run(run_dir=args.run, onnx_path=args.out, name=args.name, version=args.version,
                      parent=args.parent, checkpoint=args.checkpoint, data=args.data)
    print(json.dumps({"onnx": args.out, "metrics": card.metrics}, indent=2))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from segloop.loading import load_scan
    from segloop.scan_info import format_info, scan_info

    infos = [scan_info(load_scan(path)) for path in args.scans]  # a bad file stops with one error line
    print(json.dumps(infos, indent=2) if args.json else "\n\n".join(format_info(i) for i in infos))
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from segloop.training import combine_runs

    print(json.dumps(combine_runs(args.runs, args.out, args.checkpoint)))
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
    p.add_argument("--channels", default=None, help="U-Net channels per level, comma-separated (default: 16,32,64,128,256)")
    p.add_argument("--res-units", type=int, default=None, help="residual units per U-Net level (default: 1, as the shipped model)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("ensemble", help="combine finished training runs into one ensemble checkpoint",
                       description="Combine runs trained on the same split into one network that averages their "
                                   "softmax outputs; writes a run folder (best.pt, split.json, config.json, "
                                   "summary.json) that `export` turns into one ONNX file.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run folders (from `train`)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--checkpoint", default="last.pt", help="which checkpoint of each run (default: %(default)s)")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("predict", help="segment scans with an ONNX model",
                       description="Segment each IMAGE and write <name>.nii.gz label maps to --out, on the input's own "
                                   "grid and affine so they overlay the scan in any viewer. All inputs are checked "
                                   "before anything is written.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="scans: NIfTI, a DICOM folder or .zip, NRRD or MHA")
    p.add_argument("--out", required=True, help="output folder for the label maps")
    p.add_argument("--model", default=None, help="ONNX model with a .card.json beside it (default: the shipped model in weights/)")
    p.add_argument("--no-postprocess", action="store_true", help="keep every connected component (default: largest per label)")
    p.add_argument("--json", action="store_true", help="print one JSON list of results")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("evaluate", help="Dice and HD95 of predictions against references",
                       description="Compare each label map in PRED_DIR with the same-named file in REF_DIR: Dice and "
                                   "95%% Hausdorff distance (mm) per label, per case and mean.")
    p.add_argument("pred_dir", metavar="PRED_DIR", help="folder of predicted label maps")
    p.add_argument("ref_dir", metavar="REF_DIR", help="folder of reference label maps with the same file names")
    p.add_argument("--json", action="store_true", help="print the full result (per case too) as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="export a training run to ONNX with its model card",
                       description="Export a run's best checkpoint to one self-contained ONNX file (dynamic batch and "
                                   "spatial axes), check it against PyTorch, evaluate it with ONNX Runtime on the run's "
                                   "validation split, and write <model>.card.json beside it.")
    p.add_argument("--run", required=True, help="training run folder (from `train`)")
    p.add_argument("--out", required=True, help="ONNX file to write, e.g. weights/hippocampus-unet-v1.onnx")
    p.add_argument("--name", default="hippocampus-unet", help="model name for the card (default: %(default)s)")
    p.add_argument("--version", type=int, default=1, help="model version for the card (default: %(default)s)")
    p.add_argument("--parent", default=None, help="parent model (name and version) when fine-tuned")
    p.add_argument("--checkpoint", default=None, help="checkpoint to export (default: RUN/best.pt)")
    p.add_argument("--data", default=None, help="MSD folder for the validation cases (default: the one recorded in RUN/split.json)")
    p.set_defaults(func=_cmd_export)
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
