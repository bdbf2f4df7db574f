"""Honest cross-validation: choose and report a recipe on cases that chose nothing.

A model's validation split usually also picks its best epoch (and its test-time augmentation, its
clean-up...), so the figure it reports is optimistic: the shipped model scores 0.893/0.881 on the
split that chose its epoch and 0.877/0.859 on held-back cases. `run_crossval` instead

1. splits the labelled cases into k seeded folds (`segloop.data.splits.kfold_splits`; every case in
   exactly one held-out fold, saved with the case names in ``splits.json``);
2. trains one run per fold on the other folds for a fixed schedule (`segloop.training.loop.train`;
   each run resumable, finished folds skipped on a rerun);
3. scores each fold's **final-epoch** checkpoint (``last.pt``: the held-out fold chose nothing,
   not even the epoch) on its held-out fold, through the path users get: ONNX export, the card's
   processing, `segloop.model.inference.predict`, and Dice/HD95 from `segloop.model.metrics`;
4. reports per fold, the mean and standard deviation across folds, and every case.

The held-out fold is also scored during training (every ``val_every`` epochs, PyTorch, for the
curves) and that picks each fold's ``best.pt``; those numbers are optimistic and are reported
only as such, never as the headline. When several recipes are compared by their cross-validation
figures, the winner's figure is itself slightly optimistic: the cases kept out of all of this (the
40 Decathlon cases not in the data folder) give the final, independent figure, measured once.

Files under the output folder: ``cv_config.json`` (settings, compared on every rerun),
``splits.json``, ``fold_<k>/`` (a `train` run folder plus ``final.onnx``, its card and
``heldout.json``), ``cv_summary.json``, ``cv_table.txt``, ``cv_cases.csv`` and, when asked,
``ensemble/`` (the fold models averaged, exportable with `segloop.training.export.export_run`,
whose card then states this protocol).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segloop.data.splits import Case, Split, kfold_splits, load_kfold_splits, msd_cases, save_kfold_splits
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes, atomic_write_json
from segloop.io.writers import write_csv
from segloop.model.card import Augmentation, Evaluation, Metrics, Processing
from segloop.model.metrics import per_case_rows, summarize
from segloop.training.export import HIPPOCAMPUS_LABELS, evaluate_onnx, export_onnx, hippocampus_card, write_card
from segloop.training.loop import (
    RUNTIME_FIELDS,
    TrainConfig,
    combine_runs,
    config_differences,
    load_checkpoint,
    run_state,
    train,
)

#: The checkpoint each fold is scored with: the last epoch's, which the held-out fold did not choose.
HEADLINE_CHECKPOINT = "last.pt"

EVALUATED_WITH = "ONNX Runtime, segloop.model.inference.predict, with the card's processing; segloop.model.metrics"

LogFn = Callable[[str], None]


def cv_protocol(n_folds: int) -> str:
    """The protocol line cards and summaries carry for a cross-validation.

    Parameters
    ----------
    n_folds : int
        Number of folds.

    Returns
    -------
    str

    Examples
    --------
    >>> cv_protocol(5)
    '5-fold cross-validation, final epoch'
    """
    return f"{n_folds}-fold cross-validation, final epoch"


#: The "fold" number of the run trained on every case (`run_crossval`'s ``refit``); its folder is ``all``.
REFIT = -1


def fold_dir(out_dir: str | Path, fold: int) -> Path:
    """The run folder of one fold.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The cross-validation's folder.
    fold : int
        Fold number, or `REFIT` for the run trained on every case.

    Returns
    -------
    pathlib.Path
        ``<out_dir>/fold_<fold>``, or ``<out_dir>/all`` for `REFIT`.

    Examples
    --------
    >>> fold_dir("runs/cv", 3).as_posix()
    'runs/cv/fold_3'
    >>> fold_dir("runs/cv", REFIT).as_posix()
    'runs/cv/all'
    """
    return Path(out_dir) / ("all" if fold == REFIT else f"fold_{fold}")


def _split_record(split: Split, data_dir: Path, out: Path) -> dict[str, Any]:
    """A run's ``split.json``: its cases, the data folder and the cross-validation it belongs to."""
    return {**split.to_dict(), "data": str(data_dir.resolve()), "cross_validation": str(out.resolve())}


def _label_names() -> dict[int, str]:
    return {lab.value: lab.name for lab in HIPPOCAMPUS_LABELS if lab.value != 0}


def _with_int_labels(per_case: dict[str, Any]) -> dict[str, Any]:
    """`evaluate_case` results read back from JSON (label keys are strings there) with int keys again."""
    return {name: {part: {int(k): v for k, v in values.items()} for part, values in res.items()}
            for name, res in per_case.items()}


def score_fold(run_dir: str | Path, split: Split, cases: dict[str, Case], n_folds: int,
               processing: Processing) -> dict[str, Any]:
    """Score a fold's final-epoch checkpoint on its held-out cases, as users would run it.

    The checkpoint is exported to ``final.onnx`` with a card (so the fold's model is a usable model
    of its own, whose card states what its number is worth) and each held-out case runs through
    `segloop.training.export.evaluate_onnx`.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The fold's finished run folder (``last.pt``).
    split : Split
        The fold: ``validation`` are its held-out cases.
    cases : dict of str to Case
        Every case by name.
    n_folds : int
        Number of folds (for the card's protocol).
    processing : Processing
        Test-time augmentation and clean-up to score with (and record in the card).

    Returns
    -------
    dict
        Also written to ``<run_dir>/heldout.json``: ``fold``, ``checkpoint``, ``epoch`` (of the
        checkpoint), ``labels`` (list of int), ``per_case`` (name -> `evaluate_case` result),
        ``mean`` (`summarize` result) and ``median_seconds`` (per case).

    Raises
    ------
    SegLoopError
        When the checkpoint is missing.
    """
    run = Path(run_dir)
    ckpt = run / HEADLINE_CHECKPOINT
    if not ckpt.is_file():
        raise SegLoopError(f"{ckpt}: checkpoint not found")
    _, meta = load_checkpoint(ckpt)
    onnx = run / "final.onnx"
    export_onnx(ckpt, onnx)
    labels = list(range(1, int(meta.get("num_labels", 3))))
    names = _label_names()
    protocol = (f"held-out fold {split.fold} of {cv_protocol(n_folds)}: the final-epoch checkpoint of a run on the "
                f"other folds, scored on cases that chose nothing")
    card = hippocampus_card(name=f"{run.parent.name}-fold{split.fold}", version=1, onnx_path=onnx,
                            checkpoint_meta=meta, processing=processing,
                            training={"data": "Medical Segmentation Decathlon Task04 Hippocampus",
                                      "epochs_run": meta.get("epoch"), "checkpoint": HEADLINE_CHECKPOINT},
                            split=split.to_dict())
    write_card(card, onnx)  # predict() reads the card
    held_out = [cases[n] for n in split.validation]
    ev = evaluate_onnx(onnx, held_out, labels)
    card.metrics = Metrics(validation=Evaluation(
        cases=list(split.validation),
        dice={names.get(k, str(k)): round(ev["mean"]["dice"][k]["mean"], 4) for k in labels},
        dice_std={names.get(k, str(k)): round(ev["mean"]["dice"][k]["std"], 4) for k in labels},
        hd95_mm={names.get(k, str(k)): round(ev["mean"]["hd95"][k]["mean"], 3) for k in labels},
        protocol=protocol, evaluated_with=EVALUATED_WITH))
    write_card(card, onnx)
    result = {"fold": split.fold, "checkpoint": HEADLINE_CHECKPOINT, "epoch": meta.get("epoch"), "labels": labels, **ev}
    atomic_write_json(run / "heldout.json", result)
    return result


def _spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1; 0 for one value), min and max of per-fold figures."""
    arr = np.asarray([v for v in values if not math.isnan(v)], float)
    if arr.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}


def summarize_crossval(folds: list[dict[str, Any]], splits: list[Split], meta: dict[str, Any],
                       names: dict[int, str] | None = None) -> dict[str, Any]:
    """Put the folds' held-out scores together: per fold, across folds (mean ± SD) and pooled.

    Parameters
    ----------
    folds : list of dict
        Per fold, its `score_fold` result (``per_case`` with int label keys), optionally with
        ``train_summary`` (the fold's training summary, for the optimistic best-epoch figures).
    splits : list of Split
        The folds, same order.
    meta : dict
        Recorded as given: ``data``, ``seed``, ``config``, ``processing``...
    names : dict of int to str, optional
        Label value -> name; default the hippocampus labels.

    Returns
    -------
    dict
        The ``cv_summary.json`` layout read by `segloop.training.export.cross_validation_record`:
        ``protocol``, ``protocol_detail``, ``n_folds``, ``checkpoint``, ``evaluated_with``,
        ``labels`` (value -> name), ``cases`` (every case scored), ``folds`` (per fold: ``fold``,
        ``train_cases`` (count), ``validation_cases`` (names), ``epoch``, ``dice`` and ``hd95_mm``
        (the fold's means by label name), ``dice_sd_over_cases``, ``missing``, ``spurious`` and
        ``selected_on_this_fold`` (best epoch and its PyTorch validation Dice: optimistic, the fold
        chose it)), ``across_folds`` (``dice`` and ``hd95_mm``: label name -> mean, sd (n - 1), min,
        max over the fold means), ``pooled`` (``summarize`` over all cases at once, by label name)
        and everything in `meta`.
    """
    names = names or _label_names()
    labels = list(folds[0]["labels"])
    n_folds = len(splits)
    fold_rows, all_cases = [], {}
    for res, split in zip(folds, splits):
        per_case = res["per_case"]
        all_cases.update(per_case)
        mean = summarize(per_case, labels)
        ts = res.get("train_summary") or {}
        best = ts.get("best_val") or {}
        fold_rows.append({
            "fold": split.fold, "train_cases": len(split.train), "validation_cases": list(split.validation),
            "epoch": res.get("epoch"),
            "dice": {names[k]: mean["dice"][k]["mean"] for k in labels},
            "dice_sd_over_cases": {names[k]: mean["dice"][k]["std"] for k in labels},
            "hd95_mm": {names[k]: mean["hd95"][k]["mean"] for k in labels},
            "missing": {names[k]: mean["dice"][k]["missing"] for k in labels},
            "spurious": {names[k]: mean["dice"][k]["spurious"] for k in labels},
            "selected_on_this_fold": {
                "note": "optimistic: this fold's own validation chose the epoch (PyTorch, no clean-up)",
                "best_epoch": ts.get("best_epoch"),
                "val_dice": {names[int(k)]: v for k, v in (best.get("mean_dice") or {}).items()}},
        })
    pooled = summarize(all_cases, labels)
    return {
        "protocol": cv_protocol(n_folds),
        "protocol_detail": (f"each of {n_folds} folds held out once; a model trained on the other folds for a fixed "
                            f"schedule, its final-epoch checkpoint ({HEADLINE_CHECKPOINT}) scored on the held-out "
                            f"fold, which chose nothing; dice and hd95_mm are the mean over folds of each fold's "
                            f"mean, dice_std the standard deviation between folds (n - 1)"),
        "n_folds": n_folds, "checkpoint": HEADLINE_CHECKPOINT, "evaluated_with": EVALUATED_WITH,
        "labels": {str(k): names[k] for k in labels},
        "cases": sorted(all_cases),
        "folds": fold_rows,
        "across_folds": {
            "dice": {names[k]: _spread([f["dice"][names[k]] for f in fold_rows]) for k in labels},
            "hd95_mm": {names[k]: _spread([f["hd95_mm"][names[k]] for f in fold_rows]) for k in labels}},
        "pooled": {"dice": {names[k]: pooled["dice"][k] for k in labels},
                   "hd95_mm": {names[k]: pooled["hd95"][k] for k in labels}},
        **meta,
    }


def format_crossval(summary: dict[str, Any]) -> str:
    """Format a cross-validation summary as a plain-text table: one row per fold, then mean ± SD.

    Parameters
    ----------
    summary : dict
        A `summarize_crossval` result.

    Returns
    -------
    str
        Lines separated by ``\\n``, no trailing newline. Dice with 4 decimals, HD95 in mm with 2.

    Examples
    --------
    >>> s = {"protocol": "2-fold cross-validation, final epoch", "labels": {"1": "x"}, "cases": ["a", "b"],
    ...      "folds": [{"fold": 0, "validation_cases": ["a"], "epoch": 3, "dice": {"x": 0.8}, "hd95_mm": {"x": 2.0},
    ...                 "missing": {"x": 0}},
    ...                {"fold": 1, "validation_cases": ["b"], "epoch": 3, "dice": {"x": 0.6}, "hd95_mm": {"x": 4.0},
    ...                 "missing": {"x": 1}}],
    ...      "across_folds": {"dice": {"x": {"mean": 0.7, "sd": 0.1414}}, "hd95_mm": {"x": {"mean": 3.0, "sd": 1.4142}}},
    ...      "pooled": {"dice": {"x": {"mean": 0.7, "std": 0.1}}, "hd95_mm": {"x": {"mean": 3.0, "std": 1.0}}}}
    >>> print(format_crossval(s))
    2-fold cross-validation, final epoch (2 cases)
    fold  cases  epoch  x Dice  x HD95 mm  missing
    0     1      3      0.8000  2.00       0
    1     1      3      0.6000  4.00       1
    mean ± SD across 2 folds: x Dice 0.7000 ± 0.1414 HD95 3.00 ± 1.41 mm
    all 2 cases pooled: x Dice 0.7000 ± 0.1000 HD95 3.00 ± 1.00 mm
    """
    names = list(summary["labels"].values())
    header = ["fold", "cases", "epoch"] + [c for n in names for c in (f"{n} Dice", f"{n} HD95 mm")] + ["missing"]
    rows = [header]
    for f in summary["folds"]:
        cells = [str(f["fold"]), str(len(f["validation_cases"])), str(f.get("epoch"))]
        for n in names:
            cells += [f"{f['dice'][n]:.4f}", f"{f['hd95_mm'][n]:.2f}"]
        rows.append(cells + [str(sum(f["missing"].values()))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{summary['protocol']} ({len(summary['cases'])} cases)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    across, pooled = summary["across_folds"], summary["pooled"]
    lines.append(f"mean ± SD across {len(summary['folds'])} folds: " + "; ".join(
        f"{n} Dice {across['dice'][n]['mean']:.4f} ± {across['dice'][n]['sd']:.4f} "
        f"HD95 {across['hd95_mm'][n]['mean']:.2f} ± {across['hd95_mm'][n]['sd']:.2f} mm" for n in names))
    lines.append(f"all {len(summary['cases'])} cases pooled: " + "; ".join(
        f"{n} Dice {pooled['dice'][n]['mean']:.4f} ± {pooled['dice'][n]['std']:.4f} "
        f"HD95 {pooled['hd95_mm'][n]['mean']:.2f} ± {pooled['hd95_mm'][n]['std']:.2f} mm" for n in names))
    return "\n".join(lines)


def _cv_record(data_dir: Path, names: list[str], n_folds: int, seed: int, cfg: TrainConfig,
               processing: Processing, max_cases: int | None, teacher_cv: Path | None = None) -> dict[str, Any]:
    """What a cross-validation is, as compared on every rerun (`cv_config.json`)."""
    return json.loads(json.dumps({"data": str(data_dir.resolve()), "n_folds": n_folds, "seed": seed, "cases": names,
                                  "max_cases": max_cases, "config": asdict(cfg), "processing": asdict(processing),
                                  "teacher_cv": str(teacher_cv.resolve()) if teacher_cv else None,
                                  "checkpoint": HEADLINE_CHECKPOINT}))


def _check_teacher(teacher_cv: Path, splits: list[Split], refit: bool) -> None:
    """Refuse a teacher cross-validation whose folds are not these, or whose models are missing."""
    if not (teacher_cv / "splits.json").is_file():
        raise SegLoopError(f"{teacher_cv}: not a cross-validation folder (no splits.json)")
    theirs = {s.fold: set(s.validation) for s in load_kfold_splits(teacher_cv / "splits.json")}
    if theirs != {s.fold: set(s.validation) for s in splits}:
        raise SegLoopError(f"{teacher_cv} was cross-validated on other folds: its models saw cases that are held out "
                           "here, so they cannot teach this cross-validation")
    needed = [fold_dir(teacher_cv, s.fold) for s in splits] + ([fold_dir(teacher_cv, REFIT)] if refit else [])
    missing = [str(d) for d in needed if not (d / HEADLINE_CHECKPOINT).is_file()]
    if missing:
        raise SegLoopError(f"the teacher cross-validation has no final model in {', '.join(missing)}"
                           + (" (train its model on every case with --refit)" if refit else ""))


def _train_fold(cfg: TrainConfig, train_cases: list[Case], val_cases: list[Case], run: str,
                session_minutes: float | None) -> dict[str, Any]:
    """One fold's `train` call in a worker process (a module-level function, so it can be spawned)."""
    return train(cfg, train_cases, val_cases, run, resume=True, session_minutes=session_minutes)


def _train_folds_in_parallel(pending: list[Split], by_name: dict[str, Case], cfg_for: Callable[[int], TrainConfig],
                             out: Path,
                             data_dir: Path, n_folds: int, jobs: int, session_minutes: float | None,
                             say: LogFn) -> list[Split]:
    """Train `pending` folds (and the `REFIT` run) `jobs` at a time in spawned processes; returns those
    left incomplete."""
    workers = min(jobs, len(pending))
    threads = max(1, (os.cpu_count() or 1) // workers)  # share the cores out instead of each process taking all
    t0 = time.perf_counter()
    futures = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for split in pending:
            run = fold_dir(out, split.fold)
            atomic_write_json(run / "split.json", _split_record(split, data_dir, out))
            name = "all cases" if split.fold == REFIT else f"fold {split.fold}/{n_folds}"
            say(f"{name}: {'continuing' if run_state(run) == 'partial' else 'training'} on "
                f"{len(split.train)} cases, {len(split.validation)} held out ({workers} runs at once)")
            cfg = cfg_for(split.fold)
            cfg = cfg if cfg.threads is not None else replace(cfg, threads=threads)
            futures[split.fold] = pool.submit(_train_fold, cfg, [by_name[n] for n in split.train],
                                              [by_name[n] for n in split.validation], str(run), session_minutes)
        summaries = {k: f.result() for k, f in futures.items()}
    say(f"{len(pending)} runs trained in {time.perf_counter() - t0:.0f} s")
    left = [s for s in pending if not summaries[s.fold].get("complete")]
    for s in left:
        summary = summaries[s.fold]
        name = "all cases" if s.fold == REFIT else f"fold {s.fold}"
        say(f"{name}: {summary['stopped']} after epoch {summary['epochs_run']}; rerun with --resume")
    return left


def run_crossval(data_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, n_folds: int = 5, seed: int = 0,
                 resume: bool = False, mirror_tta: bool = True, largest_component: bool = True,
                 max_cases: int | None = None, session_minutes: float | None = None, ensemble: bool = False,
                 log: LogFn | None = None, jobs: int = 1, refit: bool = False,
                 teacher_cv: str | Path | None = None) -> dict[str, Any]:
    """Run (or continue) a k-fold cross-validation of a training recipe and report it.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        MSD-style folder of labelled cases.
    out_dir : str or pathlib.Path
        The cross-validation's folder; created when missing. A rerun into it continues the same
        cross-validation: finished folds are skipped.
    cfg : TrainConfig
        The recipe every fold trains with (``val_every`` only sets how often the curves are scored).
    n_folds : int, optional
        Number of folds.
    seed : int, optional
        Seed of the fold assignment (`segloop.data.splits.kfold_splits`).
    resume : bool, optional
        Continue a fold whose run stopped part-way from its last completed epoch. Without it such a
        fold is refused (a partial run is never thrown away silently).
    mirror_tta : bool, optional
        Score with the left-right mirror test-time augmentation (the shipped card's ``flip_left_right``).
    largest_component : bool, optional
        Score with the largest-component clean-up (as the shipped card).
    max_cases : int, optional
        Use only the first N cases by name: a quick check of the pipeline, not a measure of accuracy.
    session_minutes : float, optional
        Wall time this call may take; the running fold pauses when another epoch would not fit (see
        `train`), to be resumed with ``resume=True``.
    ensemble : bool, optional
        When every fold is done, also combine the folds' final-epoch checkpoints into
        ``<out_dir>/ensemble`` (`combine_runs`), ready for `segloop.training.export.export_run`.
    log : callable, optional
        Called with one line of text per step (fold started, resumed, skipped, scored).
    jobs : int, optional
        Folds trained at once, each in its own process (spawned, so each may use CUDA). A GPU is
        rarely busy with one small 3D network: five folds side by side take little longer than one.
        Without ``cfg.threads`` the CPU cores are shared out among them. Every fold gives the same
        result as when trained alone.
    refit : bool, optional
        Also train one model on every case with the same recipe into ``<out_dir>/all`` (no case held
        out, final epoch), the model to ship: the folds' figures estimate it (each fold model saw
        (k-1)/k of the cases, so they slightly understate it), and unlike an ensemble it runs as fast
        as one network. Its ``cross_validation.json`` lets `segloop.training.export.export_run` put
        the cross-validation figures and protocol on its card. With ``jobs > 1`` it trains beside the
        folds.
    teacher_cv : str or pathlib.Path, optional
        A finished cross-validation on the same folds whose models teach this one's (knowledge
        distillation, ``cfg.distill_weight``): fold k learns from the teacher's fold k, which never saw
        fold k's held-out cases either, and the `refit` model from the teacher's ``all`` model. A teacher
        cross-validation with other folds is refused: its models would have seen the cases scored here.

    Returns
    -------
    dict
        ``state`` ("finished" or "paused"), ``folds_done`` (list of int), ``out`` (str) and, when
        finished, ``summary`` (the `summarize_crossval` result, also in ``cv_summary.json``),
        ``table`` (`format_crossval`), with `ensemble` ``ensemble`` (its folder) and with `refit`
        ``refit`` (its folder).

    Raises
    ------
    SegLoopError
        When the folder holds a cross-validation with other settings (the differences are listed), a
        fold is part-way without `resume`, the data folder has no labelled case, or a fold's run fails.
    ValueError
        When the cases cannot fill `n_folds` folds.

    Notes
    -----
    Files: see the module docstring. ``cv_summary.json``, ``cv_table.txt`` and ``cv_cases.csv``
    (one row per case: fold, then Dice, HD95 and missing/spurious flags per label, as
    `segloop.model.metrics.per_case_rows`) are written when every fold is scored.
    """
    t_start = time.perf_counter()
    say = log or (lambda line: None)
    data_dir, out = Path(data_dir), Path(out_dir)
    cases = msd_cases(data_dir)
    if max_cases:
        cases = cases[:max_cases]
    by_name = {c.name: c for c in cases}
    names = [c.name for c in cases]
    splits = kfold_splits(names, n_folds, seed)
    tta = [Augmentation.FLIP_LEFT_RIGHT.value] if mirror_tta else []
    processing = Processing(test_time_augmentation=tta, largest_component=largest_component)
    teacher_dir = Path(teacher_cv) if teacher_cv else None
    if teacher_dir:
        _check_teacher(teacher_dir, splits, refit)
    record = _cv_record(data_dir, names, n_folds, seed, cfg, processing, max_cases, teacher_dir)

    def cfg_for(fold: int) -> TrainConfig:
        if teacher_dir is None:
            return cfg
        return replace(cfg, teacher=str((fold_dir(teacher_dir, fold) / HEADLINE_CHECKPOINT).resolve()))
    config_file = out / "cv_config.json"
    if config_file.is_file():
        before = json.loads(config_file.read_text())
        # the data folder may move (another machine): the case names are what must agree
        diffs = (config_differences(before, record, ignore=("config", "data"))
                 + config_differences(before["config"], record["config"], ignore=RUNTIME_FIELDS))
        if diffs:
            raise SegLoopError(f"{out} holds a cross-validation with other settings ({'; '.join(diffs)}); "
                               "rerun it with its own settings, or use a new folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_file, record)
    save_kfold_splits(out / "splits.json", splits, data_dir)

    for k in [s.fold for s in splits] + ([REFIT] if refit else []):
        if run_state(fold_dir(out, k)) == "partial" and not resume:
            raise SegLoopError(f"{fold_dir(out, k)} holds a run that stopped part-way; rerun with --resume "
                               "to continue it from its last completed epoch")
    refit_split = Split(seed, n_folds, REFIT, tuple(names), ()) if refit else None
    pending = [s for s in splits if run_state(fold_dir(out, s.fold)) != "complete"]
    if refit_split and run_state(fold_dir(out, REFIT)) != "complete":
        pending.append(refit_split)
    if jobs > 1 and len(pending) > 1:
        paused = _train_folds_in_parallel(pending, by_name, cfg_for, out, data_dir, n_folds, jobs, session_minutes,
                                          say)
        if paused:
            return {"state": "paused", "folds_done": [s.fold for s in splits if s not in paused], "out": str(out)}

    results, done = [], []
    for split in splits:
        k, run = split.fold, fold_dir(out, split.fold)
        state = run_state(run)
        if state != "complete":
            left = None if session_minutes is None else session_minutes - (time.perf_counter() - t_start) / 60
            if left is not None and left <= 0:
                say(f"fold {k}: not started, the session's time is up")
                return {"state": "paused", "folds_done": done, "out": str(out)}
            atomic_write_json(run / "split.json", _split_record(split, data_dir, out))
            say(f"fold {k}/{n_folds}: {'continuing' if state == 'partial' else 'training'} on {len(split.train)} "
                f"cases, {len(split.validation)} held out")
            summary = train(cfg_for(k), [by_name[n] for n in split.train], [by_name[n] for n in split.validation], run,
                            resume=True, session_minutes=left)
            if not summary.get("complete"):
                say(f"fold {k}: {summary['stopped']} after epoch {summary['epochs_run']}; rerun with --resume")
                return {"state": "paused", "folds_done": done, "out": str(out)}
        else:
            say(f"fold {k}/{n_folds}: already trained")
        heldout = run / "heldout.json"
        if heldout.is_file():
            res = json.loads(heldout.read_text())
            res["per_case"] = _with_int_labels(res["per_case"])
        else:
            res = score_fold(run, split, by_name, n_folds, processing)
        res["train_summary"] = json.loads((run / "summary.json").read_text())
        fold_dice = ", ".join(f"{_label_names().get(int(k_), k_)} {v['mean']:.4f}" for k_, v in res["mean"]["dice"].items())
        say(f"fold {k}: held-out Dice {fold_dice} (final epoch {res['epoch']})")
        results.append(res)
        done.append(k)

    summary = summarize_crossval(results, splits, {"data": str(data_dir.resolve()), "seed": seed,
                                                   "config": record["config"], "processing": asdict(processing)})
    atomic_write_json(out / "cv_summary.json", summary)
    table = format_crossval(summary)
    atomic_write_bytes(out / "cv_table.txt", (table + "\n").encode())
    names_by_value = _label_names()
    rows = [{"fold": res["fold"], **row} for res in results
            for row in per_case_rows({"labels": res["labels"], "per_case": res["per_case"]}, names_by_value)]
    write_csv(out / "cv_cases.csv", rows)
    result = {"state": "finished", "folds_done": done, "out": str(out), "summary": summary, "table": table}
    if ensemble:
        combine_runs([fold_dir(out, s.fold) for s in splits], out / "ensemble", HEADLINE_CHECKPOINT)
        result["ensemble"] = str(out / "ensemble")
        say(f"ensemble of the {n_folds} final-epoch fold models: {out / 'ensemble'}")
    if refit_split:
        run = fold_dir(out, REFIT)
        if run_state(run) != "complete":
            left = None if session_minutes is None else session_minutes - (time.perf_counter() - t_start) / 60
            atomic_write_json(run / "split.json", _split_record(refit_split, data_dir, out))
            say(f"all {len(names)} cases: {'continuing' if run_state(run) == 'partial' else 'training'} the model to ship")
            trained = train(cfg_for(REFIT), [by_name[n] for n in names], [], run, resume=True, session_minutes=left)
            if not trained.get("complete"):
                say(f"all cases: {trained['stopped']} after epoch {trained['epochs_run']}; rerun with --resume")
                return {**result, "state": "paused"}
        atomic_write_json(run / "cross_validation.json", {**summary, "refit_on_all_cases": len(names)})
        result["refit"] = str(run)
        say(f"model trained on all {len(names)} cases: {run} (export it with --checkpoint {run / HEADLINE_CHECKPOINT})")
    return result
