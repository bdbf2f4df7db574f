"""Feedback-loop benchmark: does fine-tuning on a few corrected cases fix a domain shift?

1. Takes the shipped model's validation cases (its card's split.validation, found in --data).
2. Applies a seeded MR domain shift to them (segloop.data.domain_shift: gamma intensity remap, smooth
   bias field, lower-SNR Rician noise) and writes the shifted images as NIfTI into a temporary workspace.
3. Splits them into N "corrected" cases (their ground truth stands in for a user's corrections) and a
   disjoint evaluation set (the rest).
4. Evaluates the shipped model on the shifted evaluation set through segloop.model.inference.predict.
5. Fine-tunes through the Retrain page's code path: the corrected cases are registered as scans with
   'correction' label versions in a temporary Datastore, planned by segloop.training.finetune.plan_finetune
   (the original cases mixed in are sampled there), then segloop.training.jobs.start_training
   (background job) is polled with run_status until it ends. A few original (unshifted) training cases
   are mixed in against forgetting.
6. Evaluates the new model's ONNX export the same way, prints a table and, as its LAST line, one JSON object.

Usage: python bench/feedback_loop.py [--data DIR] [--n-corrected 20] [--epochs 30] [--lr 5e-4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segloop.config import WEIGHTS_DIR, shared_data_dir  # noqa: E402
from segloop.data.splits import Case  # noqa: E402
from segloop.data.domain_shift import ShiftParams, mr_contrast_shift  # noqa: E402
from segloop.io.readers import load_label, load_scan  # noqa: E402
from segloop.model.card import load_card  # noqa: E402
from segloop.model.inference import predict  # noqa: E402
from segloop.model.metrics import dice_per_label  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import save_label_version  # noqa: E402
from segloop.store.registry import SHIPPED_STEM, register_model  # noqa: E402
from segloop.training.finetune import plan_finetune  # noqa: E402
from segloop.training.jobs import follow_run, start_training  # noqa: E402


def shift_case(image: Path, out: Path, seed: int, params: ShiftParams) -> Path:
    """Write the shifted image on the original file's grid (same affine and header, float32 data)."""
    img = nib.load(str(image))
    data = np.asarray(img.dataobj, dtype=np.float32)
    shifted = mr_contrast_shift(data, seed, params)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    nib.save(nib.Nifti1Image(shifted, img.affine, header), str(out))
    return out


def evaluate(model_path: Path, cases: list[tuple[str, Path, Path]], labels: list[int]) -> dict[str, float]:
    """Mean Dice per label over (name, image, label) cases through the app's inference path."""
    per = []
    for _, image, label in cases:
        vol = load_scan(image)
        ref = load_label(label, reference=vol).array
        pred = predict(vol, model_path)
        d = dice_per_label(pred.labels, ref, labels)
        per.append([d[k] for k in labels])
    mean = np.mean(per, axis=0)
    return {str(k): float(m) for k, m in zip(labels, mean)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=shared_data_dir() / "msd-hippocampus")
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder of the shipped model files")
    ap.add_argument("--n-corrected", type=int, default=20)
    ap.add_argument("--n-original", type=int, default=10, help="unshifted training cases mixed in (0: none)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gamma", type=float, default=ShiftParams.gamma)
    ap.add_argument("--bias", type=float, default=ShiftParams.bias_strength)
    ap.add_argument("--snr", type=float, default=ShiftParams.snr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the workspace here instead of a temp folder")
    args = ap.parse_args(argv)

    onnx = args.weights / f"{SHIPPED_STEM}.onnx"
    card_path = args.weights / f"{SHIPPED_STEM}.card.json"
    ckpt = args.weights / f"{SHIPPED_STEM}.pt"
    card = load_card(card_path)
    labels = [lab.value for lab in card.foreground_labels]
    names = {str(lab.value): lab.name for lab in card.foreground_labels}
    val_names = list(card.split.get("validation") or [])
    pairs = [(n, args.data / "imagesTr" / f"{n}.nii.gz", args.data / "labelsTr" / f"{n}.nii.gz") for n in val_names]
    pairs = [p for p in pairs if p[1].is_file() and p[2].is_file()]
    if len(pairs) <= args.n_corrected:
        raise SystemExit(f"only {len(pairs)} validation cases found in {args.data}; need more than {args.n_corrected}")
    shift = ShiftParams(gamma=args.gamma, bias_strength=args.bias, snr=args.snr)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(pairs))
    corrected = [pairs[i] for i in order[: args.n_corrected]]
    eval_set = [pairs[i] for i in order[args.n_corrected:]]

    ws = args.keep or Path(tempfile.mkdtemp(prefix="segloop-bench-"))
    ws.mkdir(parents=True, exist_ok=True)
    try:
        shifted_dir = ws / "shifted"
        shifted_dir.mkdir(exist_ok=True)
        print(f"shift: {shift.describe()}; seed {args.seed} (case i uses seed {args.seed}*1000+i)")
        shifted = {}
        for i, (name, image, label) in enumerate(pairs):
            shifted[name] = (name, shift_case(image, shifted_dir / f"{name}.nii.gz", args.seed * 1000 + i, shift), label)
        shifted_eval = [shifted[n] for n, _, _ in eval_set]
        print(f"{len(corrected)} corrected cases, {len(eval_set)} evaluation cases (disjoint), workspace {ws}")

        t0 = time.perf_counter()
        clean = evaluate(onnx, eval_set, labels)
        before = evaluate(onnx, shifted_eval, labels)
        print(f"evaluated the shipped model on the clean and shifted evaluation sets ({time.perf_counter() - t0:.0f} s)")

        # the Retrain page's code path: a datastore with the corrections, then a background training job
        store = Datastore(workspace=ws / "workspace")
        base = register_model(store, onnx, card_path, ckpt, activate=True, note="shipped model")
        for name, image, label in (shifted[n] for n, _, _ in corrected):
            scan = store.add_scan(name, image, "imported")
            ref = load_scan(image)
            save_label_version(store, scan.id, load_label(label, reference=ref).array, ref, "correction",
                               author="bench")
        # the Retrain page's plan: its sampling of original training cases, with the shifted evaluation
        # cases as the fixed validation set
        plan = plan_finetune(store, base, data_dir=args.data, n_original=args.n_original,
                             validation=[Case(n, str(im), str(lb)) for n, im, lb in shifted_eval],
                             epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, augment=True,
                             threads=args.threads, seed=args.seed)
        if plan.problems():
            raise SystemExit(plan.problems()[0])
        extra = plan.original
        params = plan.params
        t_ft = time.perf_counter()
        run_id = start_training(store, params)
        st = follow_run(store, run_id, report=lambda line: print(f"  {line}", flush=True))
        finetune_s = time.perf_counter() - t_ft
        if st["status"] != "finished":
            print(st["log_tail"])
            raise SystemExit(f"fine-tuning {st['status']}: {st['error']}")
        new = store.model(st["result_model_id"])
        after = evaluate(Path(new.onnx_path), shifted_eval, labels)

        mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
        print()
        print(f"{'Dice on ' + str(len(eval_set)) + ' eval cases':<28}" + "".join(f"{names[k]:>12}" for k in names)
              + f"{'mean':>10}")
        for title, d in (("shipped, clean images", clean), ("shipped, shifted images", before),
                         (f"fine-tuned v{new.version}, shifted", after)):
            print(f"{title:<28}" + "".join(f"{d[k]:>12.4f}" for k in names) + f"{mean(d):>10.4f}")
        print(f"change from fine-tuning: {mean(after) - mean(before):+.4f} mean Dice; fine-tuning took "
              f"{finetune_s:.0f} s ({args.epochs} epochs, lr {args.lr:g}, {len(corrected)} corrected + "
              f"{len(extra)} original cases); new model registered as v{new.version}, not activated")
        result = {"shift": shift.describe(), "n_corrected": len(corrected), "n_eval": len(eval_set),
                  "dice_clean": {names[k]: round(v, 4) for k, v in clean.items()},
                  "dice_before": {names[k]: round(v, 4) for k, v in before.items()},
                  "dice_after": {names[k]: round(v, 4) for k, v in after.items()},
                  "mean_before": round(mean(before), 4), "mean_after": round(mean(after), 4),
                  "finetune_seconds": round(finetune_s, 1)}
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(ws, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
