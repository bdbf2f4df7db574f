"""Command line: `python -m segloop COMMAND ...`. Errors end with one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from segloop.batch.engines import ENGINES
from segloop.batch.run import BatchOptions, rebuild_report, run_batch
from segloop.config import data_dir, workspace_choice
from segloop.data.folders import dataset_label_names
from segloop.data.splits import kfold_split, msd_cases
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes, atomic_write_json
from segloop.io.readers import load_label, load_scan, scan_name
from segloop.io.scan_info import format_info, scan_info
from segloop.io.volume import content_id
from segloop.io.writers import save_label, write_csv
from segloop.model.doctor import doctor_report
from segloop.model.inference import default_model_path
from segloop.model.metrics import evaluate_folders, format_evaluation, per_case_rows
from segloop.model.network import DEFAULT_ARCHITECTURE, DYNUNET_ARCHITECTURE
from segloop.model.runtime import TRAINING_MODULES, require_training, training_unavailable
from segloop.store.database import Datastore, LabelVersion
from segloop.store.identity import audit_csv, audit_rows, audit_trail, local_identity
from segloop.store.label_versions import list_versions, save_label_version
from segloop.store.registry import ensure_shipped_model
from segloop.store.scan_links import short_id
from segloop.store.vocabulary import LabelKind, RunState, ScanSource
from segloop.training.augment import AugmentEngine
from segloop.training.crossval import run_crossval
from segloop.training.export import export_run
from segloop.training.finetune import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, plan_finetune
from segloop.training.jobs import follow_run, start_training
from segloop.training.loop import TrainConfig, combine_runs, run_state, train
from segloop.wholehead.qc import write_qc
from segloop.wholehead.segment import Mode, RegistrationRefused, ScanKind, scan_kind, segment_scan, volume_report


DEFAULT_DATA = "../shared/data/msd-hippocampus"

#: The networks --architecture names (a resumed run keeps its own unless another is named).
ARCHITECTURES = {"unet": DEFAULT_ARCHITECTURE, "dynunet": DYNUNET_ARCHITECTURE}

#: Exit status of `train` and `cv` when --session-minutes paused the run: not an error, rerun with --resume.
EXIT_PAUSED = 3


def _recipe_config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """The TrainConfig of `train`/`cv`: options given on the command line over `base` (the defaults, or
    the run's own settings when it is resumed, so only what the user typed can differ)."""
    arch = dict(base.architecture)
    if args.architecture is not None and ARCHITECTURES[args.architecture]["name"] != arch.get("name"):
        arch = {**ARCHITECTURES[args.architecture], "out_channels": base.num_labels}
    if arch.get("name") != DEFAULT_ARCHITECTURE["name"] and (args.channels or args.res_units is not None):
        raise SegLoopError("--channels and --res-units shape the U-Net; the dynunet architecture is nnU-Net's plan "
                           "for this task and has no such options")
    if args.channels:
        arch["channels"] = [int(c) for c in args.channels.split(",")]
        arch["strides"] = [2] * (len(arch["channels"]) - 1)
    if args.res_units is not None:
        arch["num_res_units"] = args.res_units
    given = {"epochs": args.epochs, "time_budget_min": args.time_budget, "batch_size": args.batch_size, "lr": args.lr,
             "val_every": args.val_every, "seed": args.seed, "threads": args.threads,
             "base_checkpoint": getattr(args, "base", None), "foreground_fraction": args.foreground_fraction,
             "val_tta": args.val_tta, "amp": args.amp, "device": args.device,
             "augment": False if args.no_augment else None, "augmentation": args.augmentation,
             "teacher": getattr(args, "teacher", None), "distill_weight": args.distill_weight,
             "resolution_augmentation": args.resolution_aug,
             "patch": tuple(int(v) for v in args.patch.split(",")) if args.patch else None}
    return replace(base, architecture=arch, **{k: v for k, v in given.items() if v is not None})


def _cmd_train(args: argparse.Namespace) -> int:
    require_training()  # PyTorch, MONAI and onnx: the train extra, absent from a slim install
    if args.resume:
        out = Path(args.resume)
        if args.out and Path(args.out).resolve() != out.resolve():
            raise SegLoopError("--resume names the run folder; leave out --out or give the same folder")
        if not (out / "config.json").is_file() or not (out / "split.json").is_file():
            raise SegLoopError(f"{out}: no training run to resume (config.json and split.json missing)")
        record = json.loads((out / "config.json").read_text())
        split = json.loads((out / "split.json").read_text())
        for key in ("folds", "fold"):
            run_value = split.get("n_folds" if key == "folds" else "fold")
            if getattr(args, key) is not None and getattr(args, key) != run_value:
                raise SegLoopError(f"cannot resume {out}: --{key} {getattr(args, key)}, the run has {run_value}")
        cfg = _recipe_config(args, TrainConfig.from_dict(record))
        by_name = {c.name: c for c in msd_cases(args.data or split["data"])}
        missing = [n for n in record["train_cases"] + record["val_cases"] if n not in by_name]
        if missing:
            raise SegLoopError(f"{len(missing)} of the run's cases are not in the data folder, e.g. {missing[0]}")
        train_cases = [by_name[n] for n in record["train_cases"]]
        val_cases = [by_name[n] for n in record["val_cases"]]
    else:
        if not args.out:
            raise SegLoopError("--out is required (or --resume RUN to continue a run)")
        out = Path(args.out)
        if run_state(out) != "empty":
            raise SegLoopError(f"{out} already holds a training run; continue it with --resume {out}, "
                               "or train into a new folder")
        data = args.data or DEFAULT_DATA
        cases = msd_cases(data)
        cfg = _recipe_config(args, TrainConfig())
        split = kfold_split([c.name for c in cases], args.folds or 5, args.fold or 0, cfg.seed)
        by_name = {c.name: c for c in cases}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "split.json", {**split.to_dict(), "data": str(Path(data).resolve())})
        train_cases = [by_name[n] for n in split.train]
        val_cases = [by_name[n] for n in split.validation]
    summary = train(cfg, train_cases, val_cases, out, resume=bool(args.resume), session_minutes=args.session_minutes)
    print(json.dumps(summary))
    if summary["state"] == "paused":
        print(f"paused after epoch {summary['epochs_run']} of {cfg.epochs}; continue with: "
              f"python -m segloop train --resume {out}", file=sys.stderr)
        return EXIT_PAUSED
    return 0


def _cmd_cv(args: argparse.Namespace) -> int:
    require_training()  # PyTorch, MONAI and onnx: the train extra, absent from a slim install
    out = Path(args.out)
    stored = json.loads((out / "cv_config.json").read_text()) if (out / "cv_config.json").is_file() else None
    # a rerun continues the same cross-validation: what is not given again is taken from it
    base = TrainConfig.from_dict(stored["config"]) if stored else TrainConfig()
    cfg = _recipe_config(args, base)
    folds = args.folds or (stored["n_folds"] if stored else 5)
    split_seed = stored["seed"] if stored and args.seed is None else cfg.seed
    processing = stored["processing"] if stored else {"test_time_augmentation": ["flip_left_right"],
                                                      "largest_component": True}
    mirror = not args.no_tta if args.no_tta is not None else bool(processing["test_time_augmentation"])
    largest = not args.no_largest_component if args.no_largest_component is not None else processing["largest_component"]
    max_cases = args.max_cases if args.max_cases is not None else (stored or {}).get("max_cases")
    teacher_cv = args.teacher_cv if args.teacher_cv is not None else (stored or {}).get("teacher_cv")
    result = run_crossval(args.data, out, cfg, n_folds=folds, seed=split_seed, resume=args.resume,
                          mirror_tta=mirror, largest_component=largest, max_cases=max_cases,
                          session_minutes=args.session_minutes, ensemble=args.ensemble,
                          log=lambda line: print(line, flush=True), jobs=args.jobs, refit=args.refit,
                          teacher_cv=teacher_cv)
    if result["state"] == "paused":
        print(f"paused with folds {result['folds_done'] or 'none'} done; continue with the same command and --resume",
              file=sys.stderr)
        return EXIT_PAUSED
    print(result["table"])
    print(f"summary: {out / 'cv_summary.json'}; per case: {out / 'cv_cases.csv'}")
    if "refit" in result:
        print(f"trained on every case: {result['refit']} (export it: python -m segloop export --run {result['refit']} "
              f"--checkpoint {Path(result['refit']) / 'last.pt'} --out weights/NAME.onnx)")
    if "ensemble" in result:
        print(f"ensemble: {result['ensemble']} (export it: python -m segloop export --run {result['ensemble']} "
              "--out weights/NAME.onnx)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else default_model_path()
    out = Path(args.out)
    names = [scan_name(p) for p in args.images]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SegLoopError(f"several inputs share the output name {sorted(dupes)[0]}.nii.gz")
    for path in args.images:  # validate every input before writing anything
        vol = load_scan(path)
        if args.mode == Mode.AUTO:
            scan_kind(vol)
    out.mkdir(parents=True, exist_ok=True)
    results, rows, failed, note = [], [], 0, ""
    for path in args.images:
        vol = load_scan(path)
        try:
            seg = segment_scan(vol, model, args.mode, largest_component=False if args.no_postprocess else None,
                               accept_registration=args.accept_registration)
        except SegLoopError as exc:  # one scan that cannot be localised does not stop the others
            failed += 1
            print(f"error: {vol.name}: {exc}", file=sys.stderr)
            row = {"scan": vol.name, "status": "failed", "error": str(exc)}
            if args.qc_dir and isinstance(exc, RegistrationRefused):  # the picture to decide whether to accept it
                row["qc_picture"] = str(write_qc(args.qc_dir, vol.name, vol, exc.registration))
                print(f"  QC picture: {row['qc_picture']} (if the outline follows the brain, rerun with "
                      "--accept-registration)", file=sys.stderr)
            rows.append(row)
            continue
        target = save_label(seg.labels, vol, out / f"{vol.name}.nii.gz")
        for w in seg.warnings:
            print(f"warning: {vol.name}: {w}", file=sys.stderr)
        rows.append({"status": "ok", **volume_report(vol.name, seg)})
        if args.qc_dir and seg.registration is not None:
            rows[-1]["qc_picture"] = str(write_qc(args.qc_dir, vol.name, vol, seg.registration,
                                                  "boxes placed by a person" if seg.placed_by == "person" else ""))
        note = seg.provider_note
        results.append({"image": str(path), "output": str(target), "path": str(seg.kind),
                        "seconds": round(seg.seconds, 4), "timings": {k: round(v, 4) for k, v in seg.timings.items()},
                        "provider": seg.provider, "foreground_voxels": int((seg.labels > 0).sum()),
                        "mean_foreground_uncertainty": round(seg.mean_foreground_uncertainty, 4)})
        if not args.json:
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in seg.timings.items())
            print(f"{vol.name}: {target} ({seg.kind}: {steps}; {seg.provider})")
            if seg.kind is ScanKind.WHOLE_HEAD:
                row = rows[-1]
                print(f"  left {row['left_total_ml']:.2f} mL, right {row['right_total_ml']:.2f} mL, asymmetry "
                      f"{row['asymmetry_total_pct']:+.1f} %, eTIV {row['etiv_ml']:.0f} mL, registration quality "
                      f"{row['registration_quality']:.2f}")
    if args.report:
        write_csv(args.report, rows)
    if args.json:
        print(json.dumps(results, indent=2))
    elif note:
        print(f"provider note: {note}")
    if args.report and not args.json:
        print(f"report: {args.report} ({len(rows)} rows)")
    return 2 if failed else 0


def _registration_options(p: argparse.ArgumentParser) -> None:
    """The whole-head review options shared by predict and batch."""
    p.add_argument("--accept-registration", action="store_true",
                   help="segment whole heads whose registration the quality check refused on its match (after a "
                        "look at their QC pictures); non-head input and impossible transforms stay refused")
    p.add_argument("--qc-dir", default=None, metavar="DIR",
                   help="write a QC picture per whole head, DIR/<name>_qc.png: the MNI152 brain outline and both "
                        "boxes over the scan in three planes, titled with the verdict (accept, warn, refuse)")


def _cmd_batch(args: argparse.Namespace) -> int:
    if not args.inputs:  # no inputs: rebuild the report from the status records
        path, n = rebuild_report(args.out, args.report)
        print(f"report: {path} ({n} rows, rebuilt from {Path(args.out) / 'status'})")
        return 0
    options = BatchOptions(out=Path(args.out), engine=args.engine, workers=args.workers, address=args.address,
                           mode=args.mode, model=args.model, report=Path(args.report) if args.report else None,
                           workspace=args.workspace, progress=not args.no_progress,
                           accept_registration=args.accept_registration,
                           qc_dir=Path(args.qc_dir) if args.qc_dir else None)
    if args.address and args.engine != "ray":
        raise SegLoopError("--address joins a Ray cluster; add --engine ray")
    res = run_batch(args.inputs, options)
    print(f"batch: {res.total} scans: {res.ok} ok ({res.skipped} already done), {res.failed} failed; "
          f"{res.total - res.skipped} segmented in {res.seconds:.1f} s ({res.rate:.2f} scans/s)")
    if "actors" in res.engine:
        print(f"ray: {res.engine['actors']} actor(s) x {res.engine['cpus_per_actor']} CPU"
              + (f" + {res.engine['gpus_per_actor']:g} GPU" if res.engine["gpus_per_actor"] else "")
              + f"; cluster {res.engine['cluster_cpus']} CPUs, {res.engine['cluster_gpus']} GPUs")
    if args.workspace is not None:
        print(f"workspace: {res.registered} prediction(s) recorded for the review queue")
    print(f"report: {res.report} ({res.report_rows} rows)")
    problems = [f"{n} ({e})" for n, e in res.failures] + [f"{n} not in the workspace ({e})" for n, e in res.workspace_errors]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise SegLoopError(f"{len(problems)} of {res.total} scans failed: {shown}; see {Path(args.out) / 'status'} "
                           "and the report (a rerun retries only these)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    result = evaluate_folders(args.pred_dir, args.ref_dir)
    names = dataset_label_names(Path(args.ref_dir).parent)  # an MSD labelsTr/ folder names its labels
    if args.by_case:
        write_csv(args.by_case, per_case_rows(result, names or None))
    if args.json:
        print(json.dumps(result, indent=2, default=lambda v: None))
        return 0
    print(format_evaluation(result, names or None))
    if args.by_case:
        print(f"per-case table: {args.by_case}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    require_training()  # PyTorch, MONAI and onnx: the train extra, absent from a slim install
    card = export_run(run_dir=args.run, onnx_path=args.out, name=args.name, version=args.version,
                      parent=args.parent, checkpoint=args.checkpoint, data=args.data)
    print(json.dumps({"onnx": args.out, "metrics": asdict(card.metrics)}, indent=2))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    infos = [scan_info(load_scan(path)) for path in args.scans]  # a bad file stops with one error line
    print(json.dumps(infos, indent=2) if args.json else "\n\n".join(format_info(i) for i in infos))
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    require_training()  # PyTorch, MONAI and onnx: the train extra, absent from a slim install
    print(json.dumps(combine_runs(args.runs, args.out, args.checkpoint)))
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    require_training()  # PyTorch, MONAI and onnx: the train extra, absent from a slim install
    store = Datastore(workspace=args.workspace)
    ensure_shipped_model(store)
    base = store.model_by_version(args.base) if args.base is not None else None
    plan = plan_finetune(store, base, cases=args.cases or None, data_dir=args.data or data_dir(),
                         n_original=args.original, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         augment=not args.no_augment, val_every=args.val_every or None, threads=args.threads,
                         seed=args.seed)
    if plan.problems():
        raise SegLoopError(plan.problems()[0])
    print(f"fine-tuning v{plan.base.version} ({plan.base.name}) on {len(plan.corrected)} corrected + "
          f"{len(plan.original)} original cases; {len(plan.validation)} fixed validation cases; "
          f"{plan.params['epochs']} epochs, lr {plan.params['lr']:g}, {plan.params['threads']} threads")
    run_id = start_training(store, plan.params)
    print(f"run #{run_id} started; workspace {store.workspace}")
    if args.detach:
        return 0
    status = follow_run(store, run_id, report=lambda line: print(line, flush=True))
    if status["status"] != RunState.FINISHED:
        raise SegLoopError(f"run #{run_id} {status['status']}: {status['error']}")
    new = store.model(status["result_model_id"])
    ev = status.get("evaluation") or {}
    print(json.dumps({"run": run_id, "model_version": new.version, "activated": False,
                      "parent_mean_dice": ev.get("parent", {}).get("mean_dice_all"),
                      "new_mean_dice": ev.get("new", {}).get("mean_dice_all")}))
    return 0


def _workspace(args: argparse.Namespace) -> Datastore:
    return Datastore(workspace=args.workspace)


def _version_row(v: LabelVersion) -> dict:
    return {"id": v.id, "scan_id": v.scan_id, "version": v.version, "kind": str(v.kind), "author": v.author,
            "author_subject": v.author_subject, "author_email": v.author_email,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created_at)), "parent_version_id":
            v.parent_version_id, "model_id": v.model_id, "changed_voxels": v.changed_voxels,
            "dice_vs_model": v.dice_vs_model, "note": v.note, "path": v.path}


def _cmd_ws_add_scan(args: argparse.Namespace) -> int:
    store = _workspace(args)
    volumes = [load_scan(path) for path in args.paths]  # every input checked before anything is registered
    rows = []
    for path, vol in zip(args.paths, volumes):
        scan = store.add_scan(vol.name, path, ScanSource.IMPORTED, content_id=content_id(vol))
        rows.append({"id": scan.id, "name": scan.name, "path": scan.image_path, "content_id": scan.sha256})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']}\t{r['name']}\t{r['path']}")
    return 0


def _scan_row(scan) -> dict:
    return {"id": scan.id, "name": scan.name, "scan": short_id(scan.sha256), "content_id": scan.sha256,
            "source": str(scan.source), "shape": list(scan.shape) if scan.shape else None,
            "added": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(scan.created_at)), "path": scan.image_path}


def _cmd_ws_scans(args: argparse.Namespace) -> int:
    rows = [_scan_row(s) for s in sorted(_workspace(args).scans(), key=lambda s: s.id)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        shape = " x ".join(str(n) for n in r["shape"]) if r["shape"] else "-"
        print(f"{r['id']}\t{r['scan'] or '-':<12}\t{r['name']}\t{shape}\t{r['added']}\t{r['source']}")
    if not rows:
        print("no scans registered yet")
    return 0


def _cmd_ws_rename(args: argparse.Namespace) -> int:
    store = _workspace(args)
    with store.write() as tx:
        tx.rename_scan(args.scan_id, args.name)
    row = _scan_row(store.scan(args.scan_id))
    print(json.dumps(row, indent=2) if args.json else f"scan {row['id']} ({row['scan']}) is now called {row['name']!r}")
    return 0


def _cmd_ws_add_label(args: argparse.Namespace) -> int:
    store = _workspace(args)
    scan = store.scan(args.scan_id)
    reference = load_scan(scan.image_path)
    label = load_label(args.label_file, reference=reference)  # refuses a map on another grid
    who = local_identity(args.author)  # the OS user unless --author names someone
    version = save_label_version(store, scan.id, label.array, reference, LabelKind.CORRECTION,
                                 author=who.name, note=args.note, identity=who)
    row = _version_row(version)
    print(json.dumps(row, indent=2) if args.json else f"scan {scan.id} ({scan.name}): version {version.version} "
          f"saved by {version.author} ({version.path})")
    return 0


def _cmd_ws_versions(args: argparse.Namespace) -> int:
    store = _workspace(args)
    scan = store.scan(args.scan_id)
    rows = [_version_row(v) for v in list_versions(store, scan.id)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"scan {scan.id}: {scan.name} ({scan.image_path})")
    for r in rows:
        print(f"  v{r['version']:<3} {r['kind']:<10} {r['author'] or '-':<16} {r['created']}"
              + (f"  (from v{store.label_version(r['parent_version_id']).version})" if r["parent_version_id"] else ""))
    if not rows:
        print("  no label versions yet")
    return 0


def _cmd_ws_export(args: argparse.Namespace) -> int:
    store = _workspace(args)
    scan = store.scan(args.scan_id)
    match = [v for v in list_versions(store, scan.id) if v.version == args.version]
    if not match:
        raise SegLoopError(f"scan {scan.id} has no label version {args.version}")
    atomic_write_bytes(args.out, Path(match[0].path).read_bytes())  # already on the scan's own grid
    print(f"{args.out}: scan {scan.id} ({scan.name}) version {args.version} ({match[0].kind})")
    return 0


def _cmd_ws_audit(args: argparse.Namespace) -> int:
    entries = audit_trail(_workspace(args), local_identity())
    if args.out:
        atomic_write_bytes(args.out, audit_csv(entries).encode())
        print(f"{args.out}: {len(entries)} audit trail entries")
    elif args.json:
        print(json.dumps(audit_rows(entries), indent=2))
    else:
        for r in audit_rows(entries):
            print(f"{r['time']}  {r['action']:<12} {r['email'] or r['name'] or r['subject']:<28} {r['target']}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else default_model_path()
    rows = doctor_report(model)
    path, reason = workspace_choice()
    rows.insert(len(rows) - 2 if rows[-1][0] == "to use a GPU" else len(rows) - 1, ("workspace", f"{path} ({reason})"))
    if args.json:
        print(json.dumps(dict(rows), indent=2))
    else:
        width = max(len(k) for k, _ in rows) + 2
        print("\n".join(f"{k:<{width}}{v}" for k, v in rows))
    return 0


def _cmd_ws_where(args: argparse.Namespace) -> int:
    path, reason = workspace_choice() if args.workspace is None else (Path(args.workspace).resolve(), "given by --workspace")
    print(f"workspace: {path} ({reason})")
    return 0


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The training recipe's options, shared by `train` and `cv`. Their defaults are None so that a resumed
    run or a rerun cross-validation keeps its own settings for every option not given again."""
    p.add_argument("--seed", type=int, default=None, help="seed for the split, sampling and augmentation (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs of the schedule (default: 200)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop after this many minutes of training; the learning-rate schedule is stretched to end there")
    p.add_argument("--session-minutes", type=float, default=None, metavar="MIN",
                   help="pause before this many minutes of this session are up (when another epoch would not fit), "
                        "to be continued with --resume; the schedule does not depend on it")
    p.add_argument("--batch-size", type=int, default=None, help="cases per step (default: 8)")
    p.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate, poly-decayed (default: 0.002)")
    p.add_argument("--val-every", type=int, default=None,
                   help="validate every N epochs; the best checkpoint by mean Dice is kept as best.pt (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda when available)")
    p.add_argument("--no-augment", action="store_true", default=None, help="turn off spatial and intensity augmentation")
    p.add_argument("--resolution-aug", type=float, default=None, metavar="P",
                   help="share of training cases also acquired coarser, as 2 mm or 3-5 mm-slice scans are, with their "
                        "labels kept sharp, so coarse scans are segmented at their true size (default: 0)")
    p.add_argument("--augmentation", choices=[e.value for e in AugmentEngine], default=None,
                   help="monai: MONAI's transforms one case at a time on the CPU (the shipped recipe, default); batched: "
                        "the same transforms on the whole batch on the training device (keeps a GPU busy)")
    p.add_argument("--architecture", choices=sorted(ARCHITECTURES), default=None,
                   help="unet: MONAI UNet, as the shipped model; dynunet: MONAI DynUNet as nnU-Net plans it for this "
                        "task (32-256 filters, 4 levels), trained with deep supervision (default: unet)")
    p.add_argument("--channels", default=None, help="U-Net channels per level, comma-separated (default: 16,32,64,128,256)")
    p.add_argument("--res-units", type=int, default=None, help="residual units per U-Net level (default: 1, as the shipped model)")
    p.add_argument("--patch", default=None, metavar="X,Y,Z",
                   help="training patch in voxels, multiples of the network's size divisor (default: 48,64,48)")
    p.add_argument("--foreground-fraction", type=float, default=None, metavar="F",
                   help="fraction of patches centred on a random foreground voxel; matters only for patches smaller "
                        "than the cases (default: 0, uniformly random crops)")
    p.add_argument("--val-tta", action="store_true", default=None,
                   help="validation during training averages the left-right mirror, as the exported model does")
    p.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast (a GPU speed-up)")
    p.add_argument("--distill-weight", type=float, default=None, metavar="W",
                   help="with a teacher, the loss is (1 - W) * Dice+CE + W * KL(teacher || student) (default: 0.5)")


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
                                   "Writes checkpoints (best.pt, last.pt), history.json, split.json and summary.json to "
                                   "--out, and after every epoch resume.pt, from which --resume continues a stopped, "
                                   "killed or paused run exactly where its last completed epoch ended. Exit status 3: "
                                   "paused by --session-minutes.")
    p.add_argument("--data", default=None, help=f"MSD-style folder with dataset.json, imagesTr/, labelsTr/ (default: {DEFAULT_DATA}; "
                                                "resuming: the run's)")
    p.add_argument("--out", default=None, help="run folder for checkpoints and logs (must not hold a run yet)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in this folder with its own settings and cases; an option given here that "
                        "differs from the run's (other than --threads, --device, --data, --session-minutes) is refused")
    p.add_argument("--folds", type=int, default=None, help="number of folds of the seeded k-fold split (default: 5)")
    p.add_argument("--fold", type=int, default=None, help="which fold is the validation set (default: 0)")
    _add_recipe_options(p)
    p.add_argument("--base", default=None, help="checkpoint (.pt) to fine-tune from instead of random weights")
    p.add_argument("--teacher", default=None, metavar="CKPT",
                   help="checkpoint (.pt) of a network or ensemble whose softmax the model also learns (knowledge "
                        "distillation, see --distill-weight); it must not have seen the validation cases")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("cv", help="cross-validate a training recipe honestly (k folds, final epoch)",
                       description="Split DATA into k seeded folds (splits.json), train one run per fold on the other "
                                   "folds (each resumable; finished folds are skipped on a rerun), score each fold's "
                                   "final-epoch checkpoint on its own held-out fold (which chose nothing: not the "
                                   "epoch, not the recipe) with ONNX Runtime and the card's processing, and write "
                                   "cv_summary.json, cv_table.txt (per fold, mean ± SD across folds) and cv_cases.csv "
                                   "(per case) to --out. A rerun into --out continues the same cross-validation; "
                                   "options not given again are taken from it. Exit status 3: paused by "
                                   "--session-minutes.")
    p.add_argument("data", metavar="DATA", help="MSD-style folder with dataset.json, imagesTr/, labelsTr/")
    p.add_argument("--out", required=True, help="cross-validation folder")
    p.add_argument("--folds", type=int, default=None, help="number of folds (default: 5, or the folder's)")
    p.add_argument("--resume", action="store_true", help="continue a fold that stopped part-way from its last "
                                                         "completed epoch (without it such a fold is refused)")
    p.add_argument("--no-tta", action="store_true", default=None, help="score without the left-right mirror test-time augmentation "
                                                         "(default: with it, as the shipped card)")
    p.add_argument("--no-largest-component", action="store_true", default=None,
                   help="score without the largest-component clean-up (default: with it, as the shipped card)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N folds at once, each in its own process (a GPU fits several; the CPU cores are "
                        "shared out among them); each fold gives what it gives alone (default: 1)")
    p.add_argument("--teacher-cv", default=None, metavar="DIR",
                   help="a finished cross-validation on the same folds whose models teach these (knowledge "
                        "distillation): fold k learns from its fold k, --refit from its all model")
    p.add_argument("--refit", action="store_true",
                   help="also train one model on every case with the same recipe into OUT/all: the model to ship, as "
                        "fast as one network, whose exported card carries the cross-validation figures")
    p.add_argument("--ensemble", action="store_true",
                   help="when every fold is done, also combine the folds' final-epoch models into OUT/ensemble, "
                        "whose exported card states the cross-validation protocol and figures")
    p.add_argument("--max-cases", type=int, default=None, metavar="N",
                   help="use only the first N cases by name: a quick check of the pipeline, not a measure of accuracy")
    _add_recipe_options(p)
    p.set_defaults(func=_cmd_cv)
    p = sub.add_parser("ensemble", help="combine finished training runs into one ensemble checkpoint",
                       description="Combine runs trained on the same split, or the folds of one cross-validation "
                                   "(`cv`), into one network that averages their softmax outputs; writes a run folder "
                                   "(best.pt, split.json, config.json, summary.json and, for folds, "
                                   "cross_validation.json) that `export` turns into one ONNX file.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run folders (from `train`, or `cv`'s fold_K)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--checkpoint", default="last.pt", help="which checkpoint of each run (default: %(default)s)")
    p.set_defaults(func=_cmd_ensemble)
    p = sub.add_parser("predict", help="segment scans with an ONNX model",
                       description="Segment each IMAGE and write <name>.nii.gz label maps to --out, on the input's own "
                                   "grid and affine so they overlay the scan in any viewer. A whole-head scan is first "
                                   "registered to the MNI152 template to find both hippocampi. All inputs are checked "
                                   "before anything is written; a scan that cannot be localised is reported and the "
                                   "others still run (exit code 2).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="scans: NIfTI, a DICOM folder or .zip, NRRD or MHA")
    p.add_argument("--out", required=True, help="output folder for the label maps")
    p.add_argument("--model", default=None, help="ONNX model with a .card.json beside it (default: the shipped model in weights/)")
    p.add_argument("--no-postprocess", action="store_true", help="keep every connected component (default: largest per label)")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.AUTO.value,
                   help="auto: decide from each scan's field of view (a crop like the training data, or a whole "
                        "head); crop: run the model on the scan as it is; whole-head: register to the MNI152 "
                        "template and segment each hippocampus in its own box (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="CSV",
                   help="write one row per scan: path taken, volumes in mL per side and label, left/right asymmetry, "
                        "head size (eTIV), registration quality, mean uncertainty, seconds")
    p.add_argument("--json", action="store_true", help="print one JSON list of results")
    _registration_options(p)
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("batch", help="segment a cohort: thousands of scans, resumable, on local cores or Ray",
                       description="Segment every scan of INPUTS (files, folders, quoted glob patterns, CSV manifests "
                                   "with 'path' and 'subject' columns) into --out: <name>.nii.gz on each scan's own "
                                   "grid, a status record per scan in status/<name>.json, and a report with one row per "
                                   "scan. A bad scan is recorded as failed and the others go on (exit code 2). A rerun "
                                   "skips every scan whose record says ok for the same input bytes and whose label map "
                                   "is there, so a crashed or killed batch resumes where it stopped. Inputs that would "
                                   "share an output name get '-<8 hex digits of the path's sha256>' appended. Without "
                                   "INPUTS the report is rebuilt from the status records.")
    p.add_argument("inputs", nargs="*", metavar="INPUTS", help="scan files, folders, glob patterns (quoted) or CSV manifests")
    p.add_argument("--out", required=True, help="output folder (label maps, status/, the report)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a pool of worker processes on this machine; ray: Ray Data actors on a Ray cluster "
                        "(pip install 'ray[data]') (default: %(default)s)")
    p.add_argument("--address", default=None, help="Ray cluster to join, e.g. auto (default: start a local Ray)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes or Ray actors, each holding one model session (default: one per core; "
                        "on a Ray cluster one per GPU, else one per CPU)")
    p.add_argument("--report", default=None, metavar="CSV", help="report file (default: OUT/volumes.csv)")
    p.add_argument("--workspace", nargs="?", const="", default=None, metavar="DIR",
                   help="also record every scan and its prediction in the workspace (default folder: SEGLOOP_WORKSPACE "
                        "or ~/.segloop), so the Cases page's review queue ranks the cohort by uncertainty; uses the "
                        "workspace's active model (write --workspace=DIR, or put it after INPUTS)")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.AUTO.value,
                   help="auto: crop or whole head from each scan's field of view; crop; whole-head (default: %(default)s)")
    p.add_argument("--model", default=None, help="ONNX model with its .card.json (default: the shipped model, or the "
                                                 "workspace's active model with --workspace)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    _registration_options(p)
    p.set_defaults(func=_cmd_batch)
    p = sub.add_parser("evaluate", help="Dice and HD95 of predictions against references",
                       description="Compare each label map in PRED_DIR with the same-named file in REF_DIR: Dice and "
                                   "95%% Hausdorff distance (mm) per label, per case and mean. A structure in the reference that the "
                                   "prediction misses scores Dice 0 and is counted as missing next to the HD95 mean, "
                                   "which is over the cases where both have it.")
    p.add_argument("pred_dir", metavar="PRED_DIR", help="folder of predicted label maps")
    p.add_argument("ref_dir", metavar="REF_DIR", help="folder of reference label maps with the same file names")
    p.add_argument("--by-case", default=None, metavar="CSV",
                   help="also write one row per case (Dice, HD95 in mm, missing/spurious flags per label) for plotting")
    p.add_argument("--json", action="store_true", help="print the full result (per case too) as JSON")
    p.set_defaults(func=_cmd_evaluate)
    ws = sub.add_parser("workspace", help="scans and label versions of the workspace, without the browser",
                        description="Register scans and exchange label versions with other tools (ITK-SNAP, 3D "
                                    "Slicer) in the workspace the app uses (SEGLOOP_WORKSPACE). Safe while the app "
                                    "runs. Scans are identified by their id (printed by add-scan), never by name.")
    ws_sub = ws.add_subparsers(dest="workspace_command", required=True)
    p = ws_sub.add_parser("add-scan", help="register scans by path (no copy); prints each scan's id",
                          description="Register each scan (NIfTI, DICOM folder/.zip, NRRD, MHA) by path. A scan is "
                                      "identified by its voxels and geometry: adding the same image twice gives the "
                                      "same id; two different images with one name get two ids.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="scan files or DICOM series folders")
    p.set_defaults(func=_cmd_ws_add_scan)
    p = ws_sub.add_parser("scans", help="list the registered scans: id, short content id, name, shape, date added",
                          description="List every scan of the workspace, oldest first: its id, the short content id "
                                      "that app links carry (?scan=), its display name (unique in the workspace), "
                                      "shape, when it was added and where from.")
    p.set_defaults(func=_cmd_ws_scans)
    p = ws_sub.add_parser("rename", help="give a scan another display name (ids and versions stay)",
                          description="Rename scan SCAN_ID to NAME. Names are unique in the workspace; the scan keeps "
                                      "its id, content id and every label version, and links to it keep working.")
    p.add_argument("scan_id", type=int, metavar="SCAN_ID", help="the scan's id")
    p.add_argument("name", metavar="NAME", help="its new display name")
    p.set_defaults(func=_cmd_ws_rename)
    p = ws_sub.add_parser("add-label", help="save a label map as the scan's next version",
                          description="Save LABEL_FILE as a new 'correction' version of scan SCAN_ID. The label map "
                                      "must be on the scan's grid (same shape and affine); nothing is overwritten.")
    p.add_argument("scan_id", type=int, metavar="SCAN_ID", help="the scan's id (from add-scan or versions)")
    p.add_argument("label_file", metavar="LABEL_FILE", help="label map (NIfTI, NRRD, MHA) on the scan's grid")
    p.add_argument("--author", default=None, help="who made this correction (recorded with the version; default: "
                                                  "the OS user, who is recorded as the subject either way)")
    p.add_argument("--note", default="", help="free text recorded with the version")
    p.set_defaults(func=_cmd_ws_add_label)
    p = ws_sub.add_parser("versions", help="list a scan's label versions",
                          description="List every label version of scan SCAN_ID, oldest first.")
    p.add_argument("scan_id", type=int, metavar="SCAN_ID", help="the scan's id")
    p.set_defaults(func=_cmd_ws_versions)
    p = ws_sub.add_parser("export", help="write one label version to a file",
                          description="Write version N of scan SCAN_ID, on the scan's own grid, to FILE.")
    p.add_argument("scan_id", type=int, metavar="SCAN_ID", help="the scan's id")
    p.add_argument("--version", type=int, required=True, metavar="N", help="the version number to export")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write it (.nii.gz)")
    p.set_defaults(func=_cmd_ws_export)
    p = ws_sub.add_parser("audit", help="print or export the audit trail (who saved, approved, activated what, when)",
                          description="Print the workspace's audit trail, oldest first, or write it as CSV with --out.")
    p.add_argument("--out", default=None, metavar="FILE", help="write the trail as CSV to FILE")
    p.set_defaults(func=_cmd_ws_audit)
    p = ws_sub.add_parser("where", help="say which workspace folder is used and why",
                          description="Print the workspace folder SegLoop uses (SEGLOOP_WORKSPACE, else /data/segloop "
                                      "when /data is writable, else ~/.segloop) and why it was chosen.")
    p.set_defaults(func=_cmd_ws_where)
    for p in ws_sub.choices.values():
        p.add_argument("--workspace", default=None, help="workspace folder (default: SEGLOOP_WORKSPACE or ~/.segloop)")
        if p.prog.split()[-1] not in ("export", "where"):
            p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("doctor", help="versions, execution providers, and why CUDA runs or does not",
                       description="Print the versions of SegLoop and its libraries, the ONNX Runtime build and its "
                                   "providers, whether the NVIDIA driver and the CUDA/cuDNN libraries load, what a real "
                                   "session of the model ran on, and the command that fixes a missing piece.")
    p.add_argument("--model", default=None, help="ONNX model to start a session of (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("finetune", help="fine-tune a registered model on the corrected cases (as the Retrain page)",
                       description="Fine-tune a registered model on the newest corrected or approved label version of "
                                   "each chosen scan in the workspace, as the Retrain page does: the run is scored "
                                   "next to its parent on the parent's validation split (found in --data), exported "
                                   "to ONNX with a card inherited from the parent, and registered as a new version "
                                   "that is NOT activated.")
    p.add_argument("--workspace", default=None, help="SegLoop workspace (default: SEGLOOP_WORKSPACE or ~/.segloop)")
    p.add_argument("--base", type=int, default=None, metavar="VERSION", help="registered model version to fine-tune (default: the active model)")
    p.add_argument("--cases", nargs="*", metavar="SCAN", help="scan names to train on (default: every scan with a corrected or approved version)")
    p.add_argument("--data", default=None, help="folder with the base model's original training and validation cases (default: SEGLOOP_DATA_DIR)")
    p.add_argument("--original", type=int, default=0, metavar="N", help="also train on N of the base model's original training cases, against forgetting (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs; the last epoch's weights are the new model (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="learning rate: small, fine-tuning adjusts rather than starts over (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="cases per step (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="turn off spatial and intensity augmentation")
    p.add_argument("--val-every", type=int, default=0, metavar="N", help="also score the validation set every N epochs, for the curves only; it never picks weights (default: only at the end)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: half the cores)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling original cases and augmentation (default: %(default)s)")
    p.add_argument("--detach", action="store_true", help="start the background run and return at once")
    p.set_defaults(func=_cmd_finetune)

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
    except ModuleNotFoundError as exc:  # a training-only import reached some other way: still one clear line
        if exc.name not in TRAINING_MODULES:
            raise
        print(f"error: {training_unavailable() or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
