"""Train or fine-tune the 3D U-Net (PyTorch + MONAI) on labelled cases.

Preprocessing is `segloop.model.preprocessing`, the same code inference runs. Checkpoints hold only
tensors and a JSON string, saved atomically and loaded with `weights_only=True`. Progress goes
to a callback and to `progress.json`/`history.json` in the run folder, so a background runner
and the Retrain page can follow a run that outlives the browser session.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segloop.data.splits import Case
from segloop.io.atomic import atomic_write_bytes, atomic_write_json
from segloop.io.readers import load_label, load_scan
from segloop.model.metrics import dice_per_label
from segloop.model.network import DEFAULT_ARCHITECTURE, build_network, ensemble_architecture, size_divisor
from segloop.model.preprocessing import normalize, pad_to_multiple

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Every setting of a training run; recorded in the run folder and the model card.

    Parameters
    ----------
    epochs : int
        Epochs to run (one epoch = every training case once, in random order).
    time_budget_min : float, optional
        Wall-time budget in minutes: training stops after the epoch that reaches it, and the learning
        rate decays over this time instead of over the epochs when that is sooner.
    batch_size : int
        Cases per optimisation step.
    lr : float
        Peak learning rate of AdamW (linear warm-up, then polynomial decay with power 0.9).
    weight_decay : float
        AdamW weight decay.
    patch : tuple of 3 int
        Training patch (X, Y, Z) in voxels; each case is randomly cropped or placed in it.
    val_every : int
        Validate every this many epochs (and after the last one).
    seed : int
        Seed of torch, the case order, the patch placement and the augmentation.
    augment : bool
        Apply the spatial and intensity augmentation.
    threads : int, optional
        torch threads (``torch.set_num_threads``, process-wide); None: torch's default.
    num_labels : int
        Classes including background.
    architecture : dict
        Network entry for `segloop.model.network.build_network`.
    normalization : str
        Intensity normalisation (`segloop.model.preprocessing.normalize`).
    base_checkpoint : str, optional
        Start from these weights (fine-tuning); None: random initialisation.
    warmup_steps : int
        Steps of linear learning-rate warm-up.
    """

    epochs: int = 200
    time_budget_min: float | None = None  # stop (and finish the LR schedule) by this wall time
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 3e-5
    patch: tuple[int, int, int] = (48, 64, 48)
    val_every: int = 10
    seed: int = 0
    augment: bool = True
    threads: int | None = None
    num_labels: int = 3
    architecture: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))
    normalization: str = "clip_zscore"
    base_checkpoint: str | None = None  # fine-tune from these weights
    warmup_steps: int = 50


def load_case_arrays(case: Case, normalization: str = "clip_zscore") -> tuple[np.ndarray, np.ndarray]:
    """Load a case's normalised image (float32) and label (uint8), both in RAS order.

    Parameters
    ----------
    case : Case
        Image path and, optionally, label path.
    normalization : str, optional
        Intensity normalisation (`segloop.model.preprocessing.normalize`).

    Returns
    -------
    image : np.ndarray of float32, shape (X, Y, Z), RAS voxel order
        Normalised intensities.
    label : np.ndarray of uint8, shape (X, Y, Z), RAS voxel order, or None
        The label map on the image's grid; None when the case has no label.

    Raises
    ------
    segloop.errors.ScanError
        When a file cannot be read, or the label is not on the image's grid.
    ValueError
        When `normalization` is unknown.
    """
    img = load_scan(case.image)
    lbl = load_label(case.label, reference=img) if case.label else None
    return normalize(img.array, normalization), (lbl.array.astype(np.uint8) if lbl is not None else None)


def _augmenter(patch: tuple[int, int, int], seed: int):
    """nnU-Net-style spatial and intensity augmentation that keeps anterior/posterior meaning.

    Only left-right flips (RAS axis 0): the two hippocampi mirror each other, while flipping the
    anterior-posterior axis would swap the labels' meaning.
    """
    from monai import transforms as T

    aug = T.Compose([
        T.RandAffined(keys=("image", "label"), prob=0.3, rotate_range=(0.35, 0.35, 0.35),
                      scale_range=(0.15, 0.15, 0.15), mode=("bilinear", "nearest"), padding_mode="zeros",
                      spatial_size=patch),
        T.RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0),
        T.RandGaussianNoised(keys="image", prob=0.15, std=0.1),
        T.RandGaussianSmoothd(keys="image", prob=0.15, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        T.RandScaleIntensityd(keys="image", prob=0.15, factors=0.25),
        T.RandSimulateLowResolutiond(keys="image", prob=0.15, zoom_range=(0.5, 1.0)),
        T.RandAdjustContrastd(keys="image", prob=0.15, gamma=(0.7, 1.5), retain_stats=True),
    ])
    aug.set_random_state(seed=seed)
    return aug


def _place_in_patch(img: np.ndarray, lbl: np.ndarray, patch: tuple[int, int, int],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random crop (if larger) and random placement (if smaller) of a case inside a fixed patch."""
    out_i = np.zeros(patch, np.float32)
    out_l = np.zeros(patch, np.uint8)
    src, dst = [], []
    for s, p in zip(img.shape, patch):
        if s >= p:
            a = int(rng.integers(0, s - p + 1))
            src.append(slice(a, a + p)); dst.append(slice(0, p))
        else:
            a = int(rng.integers(0, p - s + 1))
            src.append(slice(0, s)); dst.append(slice(a, a + s))
    out_i[tuple(dst)] = img[tuple(src)]
    out_l[tuple(dst)] = lbl[tuple(src)]
    return out_i, out_l


def predict_torch(model, image_norm: np.ndarray, divisor: int,
                  patch: tuple[int, int, int] | None = None) -> np.ndarray:
    """Compute softmax probabilities (C, X, Y, Z) of a normalised image with a torch model (whole volume).

    The image is padded to at least the training patch, as in training and in ONNX inference.

    Parameters
    ----------
    model : torch.nn.Module
        The network, already in eval mode, taking CPU tensors; run without gradients.
    image_norm : np.ndarray of float32, shape (X, Y, Z), RAS voxel order
        A normalised image.
    divisor : int
        The network's size divisor; the padded size is a multiple of it.
    patch : tuple of 3 int, optional
        Smallest padded size (the training patch).

    Returns
    -------
    np.ndarray of float32, shape (C, X, Y, Z)
        Class probabilities, cropped back to the image's extent.
    """
    import torch

    padded, crop = pad_to_multiple(image_norm[None, None], divisor, min_shape=patch)
    with torch.no_grad():
        logits = model(torch.from_numpy(padded))
        probs = torch.softmax(logits, dim=1)[0].numpy()
    return probs[(slice(None),) + crop[2:]]


def save_checkpoint(path: str | Path, model, meta: dict[str, Any]) -> None:
    """Atomically write weights plus JSON metadata (no pickled objects).

    Parameters
    ----------
    path : str or pathlib.Path
        Target file (``.pt``); replaced if it exists, missing folders created.
    model : torch.nn.Module
        Its ``state_dict()`` is saved.
    meta : dict
        JSON-serialisable facts (architecture, normalization, num_labels, size_divisor, patch, epoch...),
        stored as one JSON string.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        When `meta` is not JSON-serialisable (nothing is written).
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta_json": json.dumps(meta)}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """Read (state_dict, meta) from a checkpoint written by `save_checkpoint`; refuses arbitrary pickles.

    Parameters
    ----------
    path : str or pathlib.Path
        The checkpoint; loaded onto the CPU with ``weights_only=True``.

    Returns
    -------
    state_dict : dict
        Tensor name -> torch.Tensor.
    meta : dict
        The metadata; ``{}`` when the checkpoint has none.

    Raises
    ------
    pickle.UnpicklingError
        When the file holds objects other than tensors and plain containers.
    KeyError
        When it has no ``state_dict``.
    """
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    return ckpt["state_dict"], json.loads(ckpt.get("meta_json", "{}"))


def load_model(path: str | Path):
    """Load a torch model (eval mode, on the CPU) and its metadata from a checkpoint.

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint written by `save_checkpoint`; its meta ``architecture`` says what to build
        (the default architecture when missing).

    Returns
    -------
    model : torch.nn.Module
        The network with the checkpoint's weights, in eval mode.
    meta : dict
        The checkpoint's metadata.

    Raises
    ------
    ValueError
        When the architecture cannot be built here.
    RuntimeError
        When the weights do not fit the architecture.
    """
    state, meta = load_checkpoint(path)
    model = build_network(meta.get("architecture"))
    model.load_state_dict(state)
    model.eval()
    return model, meta


def evaluate_torch(model, val: list[tuple[str, np.ndarray, np.ndarray]], num_labels: int, divisor: int,
                   patch: tuple[int, int, int] | None = None) -> dict:
    """Compute mean Dice per foreground label over validation cases (torch model, whole volumes).

    Parameters
    ----------
    model : torch.nn.Module
        The network; put in eval mode here.
    val : list of (str, np.ndarray, np.ndarray)
        Per case: name, normalised image (float32, shape (X, Y, Z), RAS) and label map (uint8, same shape).
    num_labels : int
        Classes including background; labels 1..num_labels - 1 are scored.
    divisor : int
        The network's size divisor.
    patch : tuple of 3 int, optional
        Smallest padded size (the training patch).

    Returns
    -------
    dict
        ``{"mean_dice": {label: float}, "mean_dice_all": float}``: Dice (0..1) per label value averaged
        over the cases, and the mean of those.
    """
    model.eval()
    labels = list(range(1, num_labels))
    per_case = {}
    for name, img, lbl in val:
        pred = predict_torch(model, img, divisor, patch).argmax(0)
        per_case[name] = dice_per_label(pred, lbl, labels)
    mean = {k: float(np.mean([d[k] for d in per_case.values()])) for k in labels}
    return {"mean_dice": mean, "mean_dice_all": float(np.mean(list(mean.values())))}


def train(cfg: TrainConfig, train_cases: list[Case], val_cases: list[Case], out_dir: str | Path,
          on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train, keeping the best checkpoint by validation Dice; returns a summary dict.

    Writes `config.json`, `history.json`, `progress.json`, `last.pt` and `best.pt` under out_dir.
    A crash leaves the last atomically written checkpoint intact.

    Parameters
    ----------
    cfg : TrainConfig
        Every setting of the run.
    train_cases : list of Case
        Labelled training cases (all loaded into memory first).
    val_cases : list of Case
        Labelled validation cases, scored every ``cfg.val_every`` epochs and after the last; the best
        mean Dice picks ``best.pt``. Empty: no validation, ``best.pt`` holds the final weights.
    out_dir : str or pathlib.Path
        Run folder; created when missing.
    on_progress : callable, optional
        Called with every progress event (the dict also written to ``progress.json``): ``state``
        "loading", then "training" once per epoch (epoch, epochs, loss, lr, elapsed_s, best_dice and,
        when validated, val_dice), then the summary.
    should_stop : callable, optional
        Polled after every epoch; True stops the run ("cancelled").

    Returns
    -------
    dict
        The summary, also written to ``summary.json``: ``state`` "finished", ``stopped`` ("completed",
        "cancelled" or "time budget reached"), ``epochs_run``, ``steps``, ``elapsed_s``, ``best_epoch``
        (0 without validation), ``best_val`` (`evaluate_torch` result of that epoch, or None) and
        ``checkpoint`` (path of ``best.pt``).

    Raises
    ------
    segloop.errors.ScanError
        When a case cannot be loaded.

    Notes
    -----
    Files under `out_dir`: ``config.json`` (the config and case names), ``progress.json``,
    ``history.json`` (loss per epoch, validation Dice per validated epoch), ``last.pt`` (every epoch),
    ``best.pt`` and ``summary.json``, each written atomically. Sets torch's global seed and, with
    ``cfg.threads``, its thread count.
    """
    import torch
    from monai.losses import DiceCELoss
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    divisor = size_divisor(cfg.architecture)
    atomic_write_json(out / "config.json", {**asdict(cfg), "train_cases": [c.name for c in train_cases],
                                             "val_cases": [c.name for c in val_cases]})

    def report(event: dict) -> None:
        atomic_write_json(out / "progress.json", event)
        if on_progress:
            on_progress(event)

    report({"state": "loading", "message": f"loading {len(train_cases)} training and {len(val_cases)} validation cases"})
    train_data = [load_case_arrays(c, cfg.normalization) for c in train_cases]
    val_data = [(c.name, *load_case_arrays(c, cfg.normalization)) for c in val_cases]

    model = build_network(cfg.architecture)
    if cfg.base_checkpoint:
        state, _ = load_checkpoint(cfg.base_checkpoint)
        model.load_state_dict(state)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    aug = _augmenter(cfg.patch, cfg.seed) if cfg.augment else None

    steps_per_epoch = max(1, math.ceil(len(train_data) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    history: dict[str, list] = {"epoch": [], "loss": [], "val_epoch": [], "val_dice": [], "elapsed_s": []}
    best = {"score": -1.0, "epoch": 0, "metrics": None}
    t0 = time.perf_counter()
    step = 0
    meta_base = {"architecture": cfg.architecture, "normalization": cfg.normalization, "num_labels": cfg.num_labels,
                 "size_divisor": divisor, "patch": list(cfg.patch)}
    stopped = "completed"
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=None)
    epoch = 0
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train_data))
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 0:
                continue
            imgs, lbls = [], []
            for i in idx:
                im, lb = _place_in_patch(*train_data[i], cfg.patch, rng)
                if aug is not None:
                    d = aug({"image": im[None], "label": lb[None]})
                    im, lb = np.asarray(d["image"]), np.asarray(d["label"])
                else:
                    im, lb = im[None], lb[None]
                imgs.append(np.asarray(im, np.float32)); lbls.append(np.asarray(lb, np.float32))
            x = torch.from_numpy(np.stack(imgs))
            y = torch.from_numpy(np.stack(lbls)).round()
            elapsed = time.perf_counter() - t0
            frac = step / total_steps
            if cfg.time_budget_min:
                frac = max(frac, elapsed / (cfg.time_budget_min * 60))
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * max(0.0, 1 - frac) ** 0.9
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        elapsed = time.perf_counter() - t0
        history["epoch"].append(epoch + 1)
        history["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        history["elapsed_s"].append(round(elapsed, 1))
        out_of_time = bool(cfg.time_budget_min) and elapsed >= cfg.time_budget_min * 60
        cancel = bool(should_stop and should_stop())
        last_epoch = epoch + 1 == cfg.epochs or out_of_time or cancel
        event = {"state": "training", "epoch": epoch + 1, "epochs": cfg.epochs, "loss": history["loss"][-1],
                 "lr": lr, "elapsed_s": round(elapsed, 1), "best_dice": best["score"] if best["score"] >= 0 else None}
        if val_data and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
            metrics = evaluate_torch(model, val_data, cfg.num_labels, divisor, tuple(cfg.patch))
            history["val_epoch"].append(epoch + 1)
            history["val_dice"].append(metrics["mean_dice"])
            event["val_dice"] = metrics["mean_dice"]
            if metrics["mean_dice_all"] > best["score"]:
                best = {"score": metrics["mean_dice_all"], "epoch": epoch + 1, "metrics": metrics}
                save_checkpoint(out / "best.pt", model, {**meta_base, "epoch": epoch + 1, "val": metrics})
            event["best_dice"] = best["score"]
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", dice=f"{metrics['mean_dice_all']:.3f}")
        save_checkpoint(out / "last.pt", model, {**meta_base, "epoch": epoch + 1})
        atomic_write_json(out / "history.json", history)
        report(event)
        if cancel:
            stopped = "cancelled"
            break
        if out_of_time:
            stopped = "time budget reached"
            break
    if not val_data:
        save_checkpoint(out / "best.pt", model, {**meta_base, "epoch": epoch + 1})
    summary = {"state": "finished", "stopped": stopped, "epochs_run": epoch + 1, "steps": step,
               "elapsed_s": round(time.perf_counter() - t0, 1), "best_epoch": best["epoch"],
               "best_val": best["metrics"], "checkpoint": str(out / "best.pt")}
    atomic_write_json(out / "summary.json", summary)
    report(summary)
    return summary


def combine_runs(run_dirs: list[str | Path], out_dir: str | Path, checkpoint: str = "last.pt") -> dict:
    """Make an ensemble run folder from finished runs on the same split: one checkpoint whose network
    averages the members' softmax, plus config/summary/split records for export and the model card.

    Parameters
    ----------
    run_dirs : list of str or pathlib.Path
        Finished run folders, each with ``split.json``, ``config.json``, ``summary.json`` and `checkpoint`.
    out_dir : str or pathlib.Path
        The ensemble's run folder; created when missing.
    checkpoint : str, optional
        Which checkpoint file of each run to use.

    Returns
    -------
    dict
        The summary, also written to ``summary.json``: ``state`` "finished", ``stopped``, ``epochs_run``
        and ``best_epoch`` (lists, one per member), ``elapsed_s`` (summed) and ``checkpoint``.

    Raises
    ------
    ValueError
        When the runs do not share one validation split.
    FileNotFoundError
        When a run lacks one of the files above.

    Notes
    -----
    Files under `out_dir`: ``best.pt`` (the ensemble), ``split.json`` (the shared split),
    ``config.json`` (the first member's config plus ``ensemble_of`` and ``member_configs``) and
    ``summary.json``.
    """
    import json

    runs = [Path(r) for r in run_dirs]
    splits = [json.loads((r / "split.json").read_text()) for r in runs]
    if any(sp.get("validation") != splits[0].get("validation") for sp in splits):
        raise ValueError("ensemble members must share one validation split")
    members, metas = [], []
    for r in runs:
        model, meta = load_model(r / checkpoint)
        members.append(model)
        metas.append(meta)
    arch = ensemble_architecture([m["architecture"] for m in metas])
    ensemble = build_network(arch)
    for slot, model in zip(ensemble.members, members):
        slot.load_state_dict(model.state_dict())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**metas[0], "architecture": arch, "size_divisor": size_divisor(arch),
            "members": [{"run": str(r), "checkpoint": checkpoint, "epoch": m.get("epoch")} for r, m in zip(runs, metas)]}
    meta.pop("val", None)
    save_checkpoint(out / "best.pt", ensemble, meta)
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    atomic_write_json(out / "split.json", splits[0])
    atomic_write_json(out / "config.json", {**{k: v for k, v in configs[0].items() if k != "architecture"},
                                            "ensemble_of": [str(r) for r in runs],
                                            "member_configs": configs})
    summary = {"state": "finished", "stopped": "ensemble of finished runs",
               "epochs_run": [sm.get("epochs_run") for sm in summaries],
               "elapsed_s": round(sum(sm.get("elapsed_s") or 0 for sm in summaries), 1),
               "best_epoch": [m.get("epoch") for m in metas], "checkpoint": str(out / "best.pt")}
    atomic_write_json(out / "summary.json", summary)
    return summary
