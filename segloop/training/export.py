"""Export a trained checkpoint to one self-contained ONNX file and write its model card."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from segloop.data.splits import msd_cases
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_json
from segloop.io.readers import load_label, load_scan
from segloop.model.card import (
    Augmentation,
    Evaluation,
    InputSpec,
    LabelInfo,
    Metrics,
    ModelCard,
    Normalization,
    Processing,
    card_path_for,
    file_sha256,
    now_iso,
)
from segloop.model.inference import predict
from segloop.model.metrics import evaluate_case, summarize
from segloop.model.network import DYNUNET, ENSEMBLE
from segloop.model.preprocessing import pad_to_multiple
from segloop.training.loop import load_case_arrays, load_checkpoint, load_model
from segloop.training.losses import deep_supervision_weights

HIPPOCAMPUS_LABELS = [
    LabelInfo(0, "background", "#000000"),
    LabelInfo(1, "anterior", "#ff7f0e"),
    LabelInfo(2, "posterior", "#1f9bff"),
]

MSD_ATTRIBUTION = (
    "Trained on the Medical Segmentation Decathlon Task04 Hippocampus (Vanderbilt University Medical Center), "
    "CC-BY-SA 4.0. Simpson et al. 2019, arXiv:1902.09063; Antonelli et al. 2022, Nature Communications 13:4128. "
    "These weights are a derived work and carry the same licence terms."
)


def export_onnx(checkpoint_path: str | Path, onnx_path: str | Path, opset: int = 17) -> dict[str, Any]:
    """Write the checkpoint's network as ONNX with dynamic batch and spatial axes (atomic, one file).

    The graph takes ``image`` (float32, shape (N, channels, X, Y, Z), spatial sizes multiples of the
    size divisor) and returns ``logits`` (N, C, X, Y, Z); it is traced on a zero input of the
    checkpoint's patch size (3 x divisor per axis without one) and checked with ``onnx.checker``.
    Instance norms are exported as reductions in stages (`_precise_instance_norms`), so that ONNX
    Runtime matches PyTorch to about 1e-5 whatever the input size; in eval mode a deep-supervision
    network exports only its full-resolution output.

    Parameters
    ----------
    checkpoint_path : str or pathlib.Path
        A checkpoint written by `segloop.training.loop.save_checkpoint`.
    onnx_path : str or pathlib.Path
        Target file; replaced if it exists, missing folders created.
    opset : int, optional
        ONNX opset version.

    Returns
    -------
    dict
        ``{"onnx_file": file name, "onnx_sha256": hex digest, "bytes": file size, "opset": opset}``.

    Notes
    -----
    The model is written to a hidden temporary file in the same folder, checked, made readable
    (0644) and renamed over `onnx_path`; on any error the temporary file is removed and an older
    file at `onnx_path` is left intact.
    """
    import torch

    model, meta = load_model(checkpoint_path)
    _precise_instance_norms(model)
    divisor = int(meta.get("size_divisor", 16))
    patch = meta.get("patch") or [divisor * 3] * 3
    dummy = torch.zeros(1, int(meta["architecture"].get("in_channels", 1)), *patch)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=onnx_path.parent, prefix=f".{onnx_path.stem}.")
    os.close(fd)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, dummy, tmp, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": axes, "logits": axes},
                              external_data=False)
        import onnx

        onnx.checker.check_model(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, onnx_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"onnx_file": onnx_path.name, "onnx_sha256": file_sha256(onnx_path),
            "bytes": onnx_path.stat().st_size, "opset": opset}


def _precise_instance_norms(model) -> int:
    """Replace (in place) every instance norm without running statistics by the same normalisation
    written as mean and variance reductions over one axis at a time, for ONNX export.

    ONNX Runtime's CPU ``InstanceNormalization`` (and a ``ReduceMean`` over all spatial axes at once)
    accumulates each channel's sums in float32 one voxel after another, so its error grows with the
    number of voxels: about 3e-4 in the logits of a DynUNet whose first level normalises 48x64x48
    voxels, against 1e-5 for PyTorch. Reducing the last axis first, then the next, keeps each sum
    short (tens of terms), which brings ONNX Runtime back to about 1e-5 for some 5-10 % of its
    inference time on such a network; the maths, the weights and the eval-mode outputs are unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        A network in eval mode; its instance norms are swapped for equivalent modules.

    Returns
    -------
    int
        The number of norms replaced.
    """
    import torch

    class StagedInstanceNorm(torch.nn.Module):
        def __init__(self, norm: torch.nn.Module) -> None:
            super().__init__()
            self.eps = norm.eps
            self.affine = norm.weight is not None
            if self.affine:  # stored broadcastable, (1, C, 1, ...): exported as plain initializers
                shape = (1, -1) + (1,) * (norm._get_no_batch_dim() - 1)
                self.weight = torch.nn.Parameter(norm.weight.detach().reshape(shape), requires_grad=False)
                self.bias = torch.nn.Parameter(norm.bias.detach().reshape(shape), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            axes = range(x.dim() - 1, 1, -1)
            mean = x
            for a in axes:
                mean = mean.mean(dim=a, keepdim=True)
            centred = x - mean
            var = centred * centred
            for a in axes:
                var = var.mean(dim=a, keepdim=True)
            std = torch.sqrt(var + self.eps)
            # no rsqrt: ONNX Runtime's DivMulFusion mis-wires Reciprocal-then-Mul of a deduplicated weight
            if self.affine:
                return centred * (self.weight / std) + self.bias
            return centred / std

    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, torch.nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats]
    for parent, name, child in swaps:
        setattr(parent, name, StagedInstanceNorm(child))
    return len(swaps)


def check_parity(checkpoint_path: str | Path, onnx_path: str | Path, images: list[np.ndarray]) -> dict[str, Any]:
    """Measure the max |logit difference| between PyTorch and ONNX Runtime (CPU) on normalised images.

    Parameters
    ----------
    checkpoint_path : str or pathlib.Path
        The checkpoint the ONNX file was exported from.
    onnx_path : str or pathlib.Path
        The exported model.
    images : list of np.ndarray of float32, shape (X, Y, Z), RAS voxel order
        Normalised images (at least one), each padded to the size divisor and training patch.

    Returns
    -------
    dict
        ``{"cases": len(images), "max_abs_diff": float, "mean_label_agreement": float}``: the largest
        absolute logit difference over all images and voxels (padding included), and the fraction
        (0..1) of voxels whose argmax class agrees, averaged over the images. Stored in the card as
        ``metrics.onnx_vs_pytorch``.

    Raises
    ------
    ValueError
        When `images` is empty.
    """
    import onnxruntime as ort
    import torch

    model, meta = load_model(checkpoint_path)
    divisor = int(meta.get("size_divisor", 16))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diffs, agree = [], []
    patch = tuple(meta["patch"]) if meta.get("patch") else None
    for img in images:
        x, _ = pad_to_multiple(img[None, None].astype(np.float32), divisor, min_shape=patch)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"image": x})[0]
        diffs.append(float(np.abs(ref - got).max()))
        agree.append(float((ref.argmax(1) == got.argmax(1)).mean()))
    return {"cases": len(images), "max_abs_diff": max(diffs), "mean_label_agreement": float(np.mean(agree))}


#: What the shipped model does around the network: left-right flip test-time augmentation and
#: largest-component clean-up. Cards of models trained here get it unless told otherwise.
DEFAULT_PROCESSING = Processing(test_time_augmentation=[Augmentation.FLIP_LEFT_RIGHT], largest_component=True)


def hippocampus_card(*, name: str, version: int, onnx_path: str | Path, checkpoint_meta: dict[str, Any],
                     training: dict[str, Any], split: dict[str, Any], metrics: Metrics | None = None,
                     parent: str | None = None, processing: Processing | None = None) -> ModelCard:
    """The card of a model trained from scratch on the Decathlon hippocampus data by `segloop train`.

    Only models trained here on that task get these task facts; a fine-tuned model inherits its
    parent's card instead (`segloop.model.card.derived_card`).

    Parameters
    ----------
    name : str
        Model name.
    version : int
        Version number.
    onnx_path : str or pathlib.Path
        The exported ONNX file, which must exist: the card records its name and sha256.
    checkpoint_meta : dict
        The checkpoint's metadata: ``architecture`` (required), and ``normalization``, ``size_divisor``
        and ``patch`` when present.
    training, split : dict
        Training record and train/validation case names, stored as given.
    metrics : Metrics, optional
        Scores; empty when None.
    parent : str, optional
        The model it derives from, if any.
    processing : Processing, optional
        Test-time augmentation and clean-up; default `DEFAULT_PROCESSING` (left-right flip,
        largest component), as the shipped model.

    Returns
    -------
    ModelCard
        Labels background/anterior/posterior, 1 mm RAS input, typical shape (36, 50, 36), the
        processing, CC-BY-SA-4.0 with the MSD attribution; ``created`` now. Not written to disk
        (see `write_card`).

    Raises
    ------
    KeyError
        When `checkpoint_meta` has no ``architecture``.
    OSError
        When `onnx_path` cannot be read.
    """
    onnx_path = Path(onnx_path)
    return ModelCard(
        name=name,
        version=version,
        task="Hippocampus segmentation (anterior/posterior) on T1-weighted MRI",
        labels=list(HIPPOCAMPUS_LABELS),
        input=InputSpec(
            modality="MRI T1",
            channels=int(checkpoint_meta["architecture"].get("in_channels", 1)),
            spacing=(1.0, 1.0, 1.0),
            orientation="RAS",
            normalization=checkpoint_meta.get("normalization", Normalization.CLIP_ZSCORE),
            normalization_detail="clip to the volume's 0.5/99.5 intensity percentiles, then z-score over the volume",
            size_divisor=int(checkpoint_meta.get("size_divisor", 16)),
            patch=tuple(checkpoint_meta["patch"]) if checkpoint_meta.get("patch") else None,
            typical_shape=(36, 50, 36),
        ),
        processing=Processing(test_time_augmentation=list((processing or DEFAULT_PROCESSING).test_time_augmentation),
                              largest_component=(processing or DEFAULT_PROCESSING).largest_component),
        architecture=checkpoint_meta["architecture"],
        training=training,
        split=split,
        metrics=metrics or Metrics(),
        onnx_file=onnx_path.name,
        onnx_sha256=file_sha256(onnx_path),
        parent=parent,
        created=now_iso(),
        license="CC-BY-SA-4.0",
        attribution=MSD_ATTRIBUTION,
        intended_use="Research and annotation assistance; not a medical device. Review every segmentation.",
    )


def write_card(card: ModelCard, onnx_path: str | Path) -> Path:
    """Save the card beside its ONNX file; returns the card path.

    Parameters
    ----------
    card : ModelCard
        The card.
    onnx_path : str or pathlib.Path
        The model file it describes.

    Returns
    -------
    pathlib.Path
        ``<stem>.card.json`` beside `onnx_path` (`card_path_for`), written atomically (replaced if it exists).
    """
    path = card_path_for(onnx_path)
    card.save(path)
    return path


def evaluate_onnx(onnx_path: str | Path, cases: list, labels: list[int]) -> dict[str, Any]:
    """Score an exported model (Dice/HD95) through the real inference path on labelled cases.

    Each case runs through `segloop.model.inference.predict`, with the card's test-time
    augmentation and clean-up, so the numbers are those users get.

    Parameters
    ----------
    onnx_path : str or pathlib.Path
        The ONNX model, with its card beside it.
    cases : list of Case
        Labelled cases (``image`` and ``label`` paths).
    labels : list of int
        Label values to score, e.g. [1, 2].

    Returns
    -------
    dict
        ``{"per_case": {name: {"dice": {label: float}, "hd95": {label: mm}}}, "mean": {"dice": {label:
        {"mean", "std", "n"}}, "hd95": {...}}, "median_seconds": float}`` (see
        `segloop.model.metrics.evaluate_case` and `summarize`); ``median_seconds`` is the median
        inference time per case.

    Raises
    ------
    ModelError
        When the model or its card cannot be loaded.
    segloop.errors.ScanError
        When a case's files cannot be read or do not share a grid.
    """

    per_case = {}
    seconds = []
    for case in cases:
        vol = load_scan(case.image)
        ref = load_label(case.label, reference=vol)
        pred = predict(vol, onnx_path)
        seconds.append(pred.seconds)
        per_case[case.name] = evaluate_case(pred.labels, ref.array, labels, vol.spacing)
    return {"per_case": per_case, "mean": summarize(per_case, labels), "median_seconds": float(np.median(seconds))}


def _architecture_summary(arch: dict[str, Any]) -> dict[str, Any]:
    """The facts of a member network an ensemble's card lists: U-Net channels and residual units, or
    the DynUNet's filters and deep supervision."""
    if arch.get("name") == DYNUNET:
        return {"name": "DynUNet", "filters": arch.get("filters"), "deep_supr_num":
                arch.get("deep_supr_num") if arch.get("deep_supervision") else 0}
    return {k: arch.get(k) for k in ("channels", "num_res_units")}


def loss_description(architecture: dict[str, Any]) -> str:
    """Say in words the loss `segloop.training.losses.segmentation_loss` trained a network with.

    Parameters
    ----------
    architecture : dict
        The checkpoint's architecture entry (an ensemble: its first member trained like the others).

    Returns
    -------
    str
        Dice + cross-entropy, and for a deep-supervision network the outputs and their weights.

    Examples
    --------
    >>> loss_description({"name": "monai.networks.nets.UNet"})
    'Dice + cross-entropy (MONAI DiceCELoss)'
    >>> loss_description({"name": DYNUNET, "deep_supervision": True, "deep_supr_num": 2})[-59:]
    'outputs (upsampled), weighted 0.571, 0.286, 0.143 (nnU-Net)'
    """
    if architecture.get("name") == ENSEMBLE and architecture.get("members"):
        architecture = architecture["members"][0]
    text = "Dice + cross-entropy (MONAI DiceCELoss)"
    if architecture.get("deep_supervision"):
        k = int(architecture.get("deep_supr_num", 1))
        weights = ", ".join(f"{w:.3f}" for w in deep_supervision_weights(1 + k))
        text += (f"; deep supervision: full-resolution output and {k} deeper decoder outputs (upsampled), "
                 f"weighted {weights} (nnU-Net)")
    return text


def cross_validation_record(cv: dict[str, Any]) -> tuple[Evaluation, dict[str, Any]]:
    """The card's view of a cross-validation summary (``cv_summary.json`` of `segloop.training.crossval`).

    Parameters
    ----------
    cv : dict
        The summary: ``protocol`` (e.g. "5-fold cross-validation, final epoch"), ``protocol_detail``,
        ``n_folds``, ``seed``, ``checkpoint``, ``evaluated_with``, ``cases`` (every case scored, each
        by the fold model that did not train on it), ``folds`` (per fold: ``fold``,
        ``validation_cases``, ``dice`` and ``hd95_mm`` by label name), ``across_folds`` (``dice`` and
        ``hd95_mm``: label name -> ``mean``, ``sd``, ``min``, ``max`` over the fold means) and
        ``pooled`` (the same over all cases at once).

    Returns
    -------
    evaluation : Evaluation
        ``dice`` and ``hd95_mm``: the mean over folds of each fold's mean, per label name;
        ``dice_std``: the standard deviation of the fold means (the spread between folds, not between
        cases); ``cases``: every case scored; ``protocol``: the summary's protocol, then its detail.
    record : dict
        For ``training["cross_validation"]``: ``protocol``, ``folds``, ``seed``, ``checkpoint``,
        ``dice_across_folds`` and ``hd95_mm_across_folds`` (mean, sd, min, max per label name),
        ``per_fold`` (fold, number of held-out cases, Dice and HD95 per label name),
        ``pooled_over_cases`` and, for an ensemble of the folds (``ensemble_of_folds`` in `cv`) or a
        model refit on every case (``refit_on_all_cases``), ``exported_weights`` saying what was
        exported and that it was not itself scored.

    Examples
    --------
    >>> cv = {"protocol": "2-fold cross-validation, final epoch", "protocol_detail": "...", "n_folds": 2,
    ...       "seed": 0, "checkpoint": "last.pt", "evaluated_with": "ONNX Runtime", "cases": ["a", "b"],
    ...       "folds": [{"fold": 0, "validation_cases": ["a"], "dice": {"x": 0.8}, "hd95_mm": {"x": 2.0}},
    ...                 {"fold": 1, "validation_cases": ["b"], "dice": {"x": 0.6}, "hd95_mm": {"x": 4.0}}],
    ...       "across_folds": {"dice": {"x": {"mean": 0.7, "sd": 0.1414, "min": 0.6, "max": 0.8}},
    ...                        "hd95_mm": {"x": {"mean": 3.0, "sd": 1.4142, "min": 2.0, "max": 4.0}}}, "pooled": {}}
    >>> ev, record = cross_validation_record(cv)
    >>> ev.dice, ev.dice_std, ev.protocol
    ({'x': 0.7}, {'x': 0.1414}, '2-fold cross-validation, final epoch; ...')
    """
    across = cv["across_folds"]
    evaluation = Evaluation(
        cases=list(cv["cases"]),
        dice={k: round(v["mean"], 4) for k, v in across["dice"].items()},
        dice_std={k: round(v["sd"], 4) for k, v in across["dice"].items()},
        hd95_mm={k: round(v["mean"], 3) for k, v in across["hd95_mm"].items()},
        protocol=f"{cv['protocol']}; {cv['protocol_detail']}",
        evaluated_with=cv["evaluated_with"])
    record = {"protocol": cv["protocol"], "folds": cv["n_folds"], "seed": cv["seed"], "checkpoint": cv["checkpoint"],
              "dice_across_folds": across["dice"], "hd95_mm_across_folds": across["hd95_mm"],
              "per_fold": [{"fold": f["fold"], "cases": len(f["validation_cases"]), "dice": f["dice"],
                            "hd95_mm": f["hd95_mm"]} for f in cv["folds"]],
              "pooled_over_cases": cv.get("pooled")}
    if cv.get("ensemble_of_folds") is not None:
        record["exported_weights"] = (
            f"the softmax average of the final-epoch models of folds {cv['ensemble_of_folds']}, which together trained "
            "on every case of the split; the figures are those of the single fold models on their held-out folds, "
            "the ensemble itself has no held-out case here")
    if cv.get("refit_on_all_cases") is not None:
        record["exported_weights"] = (
            f"one model trained with the same recipe and schedule on all {cv['refit_on_all_cases']} cases (final "
            f"epoch, nothing chosen on any case); the figures are those of the {cv['n_folds']} fold models on their "
            f"held-out folds, each trained on {cv['n_folds'] - 1}/{cv['n_folds']} of the cases, so they estimate "
            "this model slightly conservatively")
    return evaluation, record


def export_run(run_dir: str | Path, onnx_path: str | Path, name: str, version: int, parent: str | None = None,
               checkpoint: str | Path | None = None, data: str | Path | None = None) -> ModelCard:
    """Export a training run: ONNX file, PyTorch parity check, validation metrics and model card.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The run folder; its ``split.json``, ``config.json`` and ``summary.json`` are read when present.
    onnx_path : str or pathlib.Path
        Where to write the ONNX model; the card goes beside it.
    name : str
        Model name.
    version : int
        Version number for the card.
    parent : str, optional
        The model it derives from, if any.
    checkpoint : str or pathlib.Path, optional
        Checkpoint to export; default ``<run_dir>/best.pt``.
    data : str or pathlib.Path, optional
        The MSD folder holding the validation cases; default: ``data`` of ``split.json``.

    Returns
    -------
    ModelCard
        The card as written, see `hippocampus_card`; with validation cases found, its
        ``metrics.onnx_vs_pytorch`` (on up to 5 of them) and ``metrics.validation`` are filled.
        For a run made from a cross-validation (a ``cross_validation.json`` in `run_dir`, e.g. an
        ensemble of its folds), ``metrics.validation`` holds the cross-validation figures instead
        (`cross_validation_record`), ``training["cross_validation"]`` the per-fold record, the split
        every case that trained the exported weights, and the parity check runs on up to 5 of them:
        no case is held out from such weights, so none is scored on them.

    Raises
    ------
    SegLoopError
        When the checkpoint does not exist, or the data folder holds no labelled case.

    Notes
    -----
    Files written: the ONNX file, its card (written before the evaluation, which needs it, and again
    with the metrics) and, with validation cases, ``<run_dir>/validation_<onnx stem>.json`` (the
    `evaluate_onnx` result). Validation cases are the names of ``split.json``'s ``validation`` (or
    ``config.json``'s ``val_cases``) found in the data folder.
    """


    run = Path(run_dir)
    checkpoint = Path(checkpoint) if checkpoint else run / "best.pt"
    if not checkpoint.is_file():
        raise SegLoopError(f"{checkpoint}: checkpoint not found")
    split = json.loads((run / "split.json").read_text()) if (run / "split.json").is_file() else {}
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    _, meta = load_checkpoint(checkpoint)
    export_onnx(checkpoint, onnx_path)

    cv_file = run / "cross_validation.json"
    cv = json.loads(cv_file.read_text()) if cv_file.is_file() else None
    data_dir = data or split.get("data")
    # weights made from a cross-validation trained on every case: none is left to validate on
    val_names = set() if cv else set(split.get("validation") or config.get("val_cases") or [])
    val_cases = [c for c in msd_cases(data_dir) if c.name in val_names] if data_dir and val_names else []
    labels = list(range(1, int(meta.get("num_labels", 3))))
    names = {lab.value: lab.name for lab in HIPPOCAMPUS_LABELS}
    training = {
        "data": "Medical Segmentation Decathlon Task04 Hippocampus",
        "data_license": "CC-BY-SA 4.0",
        "cases_train": len(split.get("train") or config.get("train_cases") or []),
        "cases_validation": len(val_cases),
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "train_seconds": summary.get("elapsed_s"),
        "stopped": summary.get("stopped"),
        "config": {k: config.get(k) for k in ("epochs", "time_budget_min", "batch_size", "lr", "weight_decay",
                                                "patch", "augment", "augmentation", "seed", "base_checkpoint",
                                                "teacher", "distill_weight", "resolution_augmentation") if k in config},
        "ensemble_members": [
            {"run": Path(run_dir_).name, "architecture": _architecture_summary(c.get("architecture", {})),
             "time_budget_min": c.get("time_budget_min"), "lr": c.get("lr"), "batch_size": c.get("batch_size")}
            for run_dir_, c in zip(config.get("ensemble_of", []), config.get("member_configs", []))
        ] or None,
        "framework": "PyTorch + MONAI",
        "loss": loss_description(meta.get("architecture") or {}),
        "augmentation": "random placement in the patch, affine (rotation +-20 deg, scale +-15 %), left-right flip "
                        "only, Gaussian noise and blur, brightness, low resolution, gamma"
                        + (f"; {config['resolution_augmentation']:.0%} of cases acquired coarser (1.5-2.5 mm, or 3-5 mm "
                           "slices) with sharp labels" if config.get("resolution_augmentation") else ""),
    }
    processing = None
    if cv:
        cv_eval, training["cross_validation"] = cross_validation_record(cv)
        processing = Processing(**cv["processing"])  # the model runs as the folds were scored
    card = hippocampus_card(name=name, version=version, onnx_path=onnx_path, checkpoint_meta=meta,
                            training=training, parent=parent, processing=processing,
                            split={k: split.get(k) for k in ("seed", "n_folds", "fold", "train", "validation")})
    write_card(card, onnx_path)  # predict() reads the card, so it must exist before evaluation

    if cv:
        trained_on = set(split.get("train") or [])
        some = [c for c in msd_cases(data_dir) if c.name in trained_on][:5] if data_dir else []
        if some:
            card.metrics.onnx_vs_pytorch = check_parity(checkpoint, onnx_path, [load_case_arrays(c)[0] for c in some])
        card.metrics.validation = cv_eval

    if val_cases:
        images = [load_case_arrays(c)[0] for c in val_cases[:5]]
        card.metrics.onnx_vs_pytorch = check_parity(checkpoint, onnx_path, images)
        ev = evaluate_onnx(onnx_path, val_cases, labels)
        atomic_write_json(run / f"validation_{Path(onnx_path).stem}.json", ev)
        card.metrics.validation = Evaluation(
            cases=[c.name for c in val_cases],
            dice={names.get(k, str(k)): round(ev["mean"]["dice"][k]["mean"], 4) for k in labels},
            dice_std={names.get(k, str(k)): round(ev["mean"]["dice"][k]["std"], 4) for k in labels},
            hd95_mm={names.get(k, str(k)): round(ev["mean"]["hd95"][k]["mean"], 3) for k in labels},
            protocol="validation split of the training run (it also chose the checkpoint)",
            evaluated_with="ONNX Runtime, segloop.model.inference.predict, with the card's processing")
    write_card(card, onnx_path)
    return card
