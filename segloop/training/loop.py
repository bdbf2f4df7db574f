"""Train or fine-tune the 3D U-Net (PyTorch + MONAI) on labelled cases.

Preprocessing is `segloop.model.preprocessing`, the same code inference runs. Checkpoints hold only
tensors and a JSON string, saved atomically and loaded with `weights_only=True`. Progress goes
to a callback and to `progress.json`/`history.json` in the run folder, so a background runner
and the Retrain page can follow a run that outlives the browser session.

Every epoch also leaves `resume.pt`: weights, optimiser, schedule position, best-so-far, history, the
config and every random state (python, numpy, torch, each augmentation transform), so
``train(..., resume=True)`` continues a stopped, killed or paused run exactly where its last completed
epoch ended, and a long schedule can span several sessions without losing a run.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segloop.data.splits import Case
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes, atomic_write_json
from segloop.io.readers import load_label, load_scan
from segloop.model.metrics import dice_per_label
from segloop.model.network import DEFAULT_ARCHITECTURE, build_network, ensemble_architecture, size_divisor
from segloop.model.preprocessing import normalize, pad_to_multiple
from segloop.training.augment import AugmentEngine, AugmentParams, augment_batch, monai_resolution_transform
from segloop.training.losses import distillation_loss, segmentation_loss

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
    augmentation : str
        Where it runs (`segloop.training.augment.AugmentEngine`): "monai", MONAI's transforms one case
        at a time on the CPU (the shipped model's recipe); "batched", the same transforms and ranges
        on the whole batch on the training device, which keeps a GPU busy instead of waiting on the CPU.
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
    foreground_fraction : float
        Fraction (0..1) of training patches centred on a random foreground voxel, along the axes where
        the case is larger than the patch (nnU-Net's oversampling). 0: every crop is uniformly random,
        as before. Only matters for patches smaller than the cases: the default patch holds every
        Decathlon hippocampus crop whole, so all of its foreground is in every patch anyway.
    val_tta : bool
        Validation during training averages the softmax of the image and its left-right mirror, as the
        exported model's test-time augmentation does; False: one pass, as before.
    amp : bool
        Run forward and loss in bfloat16 autocast (a GPU speed-up; changes the numbers slightly).
    teacher : str, optional
        Checkpoint of a trained network or ensemble (`save_checkpoint`, `combine_runs`) whose softmax
        on each augmented batch the student also learns (knowledge distillation); None: no teacher.
        Honest only when the teacher never saw the cases the student is scored on (`run_crossval`'s
        ``teacher_cv`` gives each fold the teacher trained without it).
    distill_weight : float
        With a teacher, the loss is ``(1 - w) * segmentation + w * KL(teacher || student)``.
    resolution_augmentation : float
        Share of the training cases also acquired at a coarser resolution, SynthSeg-style: half of them
        2 mm-like in every axis (1.5-2.5 training voxels), half with 3-5 mm slices along a random axis,
        blurred by the slice profile and brought back to the training grid while their labels stay sharp
        (`segloop.training.augment.simulate_resolution`), so the model segments coarse scans at their true
        size. 0 (the shipped recipe) leaves the augmentation and its random stream exactly as before.
    device : str, optional
        torch device, e.g. "cuda", "cuda:1" or "cpu"; None: CUDA when torch sees a GPU, else the CPU.

    Notes
    -----
    `RUNTIME_FIELDS` (threads, device) say where and how fast a run computes, not what: a run may be
    resumed with other values of them, never with another value of any other field. Deep supervision
    comes with the architecture, not a field: `segloop.model.network.DYNUNET_ARCHITECTURE` (MONAI's
    DynUNet, nnU-Net's plan for this task) also returns its two deeper decoder outputs in training
    mode, and `segloop.training.losses.segmentation_loss` weighs them 2/7 and 1/7 beside the
    full-resolution output's 4/7, as nnU-Net does; the default `UNet` (the shipped model's) has no
    auxiliary outputs and trains with plain Dice + cross-entropy.
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
    augmentation: str = "monai"
    threads: int | None = None
    num_labels: int = 3
    architecture: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))
    normalization: str = "clip_zscore"
    base_checkpoint: str | None = None  # fine-tune from these weights
    warmup_steps: int = 50
    foreground_fraction: float = 0.0
    val_tta: bool = False
    amp: bool = False
    device: str | None = None
    teacher: str | None = None
    distill_weight: float = 0.5
    resolution_augmentation: float = 0.0  # share of cases acquired coarser (2 mm, or 3-5 mm slices)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild a config from its JSON record (``config.json`` of a run); unknown keys are ignored.

        Parameters
        ----------
        data : dict
            `dataclasses.asdict` of a config after a JSON round trip (lists for tuples), possibly with
            other keys (``train_cases``...). Missing fields take their defaults, so records written
            before a field existed still load.

        Returns
        -------
        TrainConfig

        Examples
        --------
        >>> TrainConfig.from_dict({"epochs": 3, "patch": [16, 16, 16], "train_cases": ["a"]}).patch
        (16, 16, 16)
        """
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "patch" in known:
            known["patch"] = tuple(int(v) for v in known["patch"])
        return cls(**known)


#: Config fields that change where and how fast a run computes, not what it computes: a run may be
#: resumed with other values of these (another machine, more threads). Bit-for-bit equality with an
#: uninterrupted run needs the same values: another thread count changes the order of float sums.
RUNTIME_FIELDS = ("threads", "device")

#: The checkpoint a run resumes from, written atomically after every epoch.
RESUME_FILE = "resume.pt"


def config_record(cfg: TrainConfig, train_cases: list[Case], val_cases: list[Case]) -> dict[str, Any]:
    """The JSON record of a run's settings and cases (``config.json``; compared on resume).

    Parameters
    ----------
    cfg : TrainConfig
        The settings.
    train_cases, val_cases : list of Case
        The run's cases; only their names are recorded.

    Returns
    -------
    dict
        `dataclasses.asdict` of `cfg` as it reads back from JSON (tuples as lists), plus
        ``train_cases`` and ``val_cases`` (lists of names, in the order given).
    """
    record = {**asdict(cfg), "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases]}
    return json.loads(json.dumps(record))


def config_differences(run: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = RUNTIME_FIELDS) -> list[str]:
    """Say, field by field, how a config record differs from a run's: why a resume is refused.

    Parameters
    ----------
    run : dict
        The record the run was started with (`config_record`).
    now : dict
        The record of the call that wants to continue it.
    ignore : tuple of str, optional
        Fields allowed to differ (`RUNTIME_FIELDS`).

    Returns
    -------
    list of str
        One "field: <run's value> in the run, <value> now" per differing field (case lists summarised
        by their counts), sorted; empty when the two agree.

    Examples
    --------
    >>> config_differences({"epochs": 10, "threads": 2}, {"epochs": 20, "threads": 8})
    ['epochs: 10 in the run, 20 now']
    """
    out = []
    for key in sorted(set(run) | set(now)):
        if key in ignore or run.get(key) == now.get(key):
            continue
        a, b = run.get(key), now.get(key)
        if isinstance(a, list) and isinstance(b, list) and key.endswith("cases"):
            a, b = f"{len(a)} cases", f"{len(b)} other cases" if len(a) == len(b) else f"{len(b)} cases"
        out.append(f"{key}: {a} in the run, {b} now")
    return out


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


def _augmenter(patch: tuple[int, int, int], seed: int, resolution: float = 0.0):
    """nnU-Net-style spatial and intensity augmentation that keeps anterior/posterior meaning.

    Only left-right flips (RAS axis 0): the two hippocampi mirror each other, while flipping the
    anterior-posterior axis would swap the labels' meaning. With `resolution` > 0, that share of the
    cases is also acquired at a coarser resolution (`segloop.training.augment.simulate_resolution`);
    without it the pipeline is exactly the shipped model's.
    """
    from monai import transforms as T

    coarse = [monai_resolution_transform(AugmentParams(p_resolution=resolution))] if resolution > 0 else []
    aug = T.Compose([
        T.RandAffined(keys=("image", "label"), prob=0.3, rotate_range=(0.35, 0.35, 0.35),
                      scale_range=(0.15, 0.15, 0.15), mode=("bilinear", "nearest"), padding_mode="zeros",
                      spatial_size=patch),
        T.RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0),
        *coarse,
        T.RandGaussianNoised(keys="image", prob=0.15, std=0.1),
        T.RandGaussianSmoothd(keys="image", prob=0.15, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        T.RandScaleIntensityd(keys="image", prob=0.15, factors=0.25),
        T.RandSimulateLowResolutiond(keys="image", prob=0.15, zoom_range=(0.5, 1.0)),
        T.RandAdjustContrastd(keys="image", prob=0.15, gamma=(0.7, 1.5), retain_stats=True),
    ])
    aug.set_random_state(seed=seed)
    return aug


def _place_in_patch(img: np.ndarray, lbl: np.ndarray, patch: tuple[int, int, int],
                    rng: np.random.Generator, centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crop (if larger) and place (if smaller) a case inside a fixed patch, at random or around a voxel.

    Parameters
    ----------
    img : np.ndarray of float32, shape (X, Y, Z)
        Normalised image.
    lbl : np.ndarray of uint8, shape (X, Y, Z)
        Its label map.
    patch : tuple of 3 int
        Patch size (X, Y, Z).
    rng : np.random.Generator
        Draws the crop and placement offsets (one integer per axis, in axis order).
    centre : np.ndarray of int, shape (3,), optional
        A voxel to centre the crop on, along the axes where the case is larger than the patch (the
        window is shifted back inside the case at its borders); None: uniformly random crops.

    Returns
    -------
    image : np.ndarray of float32, shape `patch`
        The patch; outside the case 0.
    label : np.ndarray of uint8, shape `patch`
        The label patch; outside the case 0 (background).
    """
    out_i = np.zeros(patch, np.float32)
    out_l = np.zeros(patch, np.uint8)
    src, dst = [], []
    for axis, (s, p) in enumerate(zip(img.shape, patch)):
        if s >= p:
            if centre is None:
                a = int(rng.integers(0, s - p + 1))
            else:  # no draw here: the foreground voxel already was the random choice
                a = int(np.clip(int(centre[axis]) - p // 2, 0, s - p))
            src.append(slice(a, a + p)); dst.append(slice(0, p))
        else:
            a = int(rng.integers(0, p - s + 1))
            src.append(slice(0, s)); dst.append(slice(a, a + s))
    out_i[tuple(dst)] = img[tuple(src)]
    out_l[tuple(dst)] = lbl[tuple(src)]
    return out_i, out_l


def _sample_patch(img: np.ndarray, lbl: np.ndarray, foreground: np.ndarray | None, patch: tuple[int, int, int],
                  fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training patch: with probability `fraction` centred on a random foreground voxel, else random.

    With ``fraction == 0`` no extra number is drawn, so the default recipe's random stream (and every
    run made before the option existed) is unchanged.

    Parameters
    ----------
    img, lbl : np.ndarray, shape (X, Y, Z)
        Normalised image (float32) and label map (uint8).
    foreground : np.ndarray of int, shape (N, 3), or None
        Coordinates of the case's foreground voxels (``np.argwhere(lbl > 0)``); None or empty: none.
    patch : tuple of 3 int
        Patch size.
    fraction : float
        Probability (0..1) of a foreground-centred patch.
    rng : np.random.Generator
        The run's generator.

    Returns
    -------
    tuple of np.ndarray
        Image (float32) and label (uint8) patches of shape `patch`.
    """
    centre = None
    if fraction > 0 and rng.random() < fraction and foreground is not None and len(foreground):
        centre = foreground[int(rng.integers(0, len(foreground)))]
    return _place_in_patch(img, lbl, patch, rng, centre)


#: Mirror axes of the left-right test-time augmentation (RAS axis 0), the only flip that keeps
#: anterior and posterior apart (as `segloop.model.inference` and the card's "flip_left_right").
MIRROR_AXES = (0,)


def predict_torch(model, image_norm: np.ndarray, divisor: int,
                  patch: tuple[int, int, int] | None = None, mirror: bool = False) -> np.ndarray:
    """Compute softmax probabilities (C, X, Y, Z) of a normalised image with a torch model (whole volume).

    The image is padded to at least the training patch, as in training and in ONNX inference.

    Parameters
    ----------
    model : torch.nn.Module
        The network, already in eval mode, on any device (the image is moved to it); run without gradients.
    image_norm : np.ndarray of float32, shape (X, Y, Z), RAS voxel order
        A normalised image.
    divisor : int
        The network's size divisor; the padded size is a multiple of it.
    patch : tuple of 3 int, optional
        Smallest padded size (the training patch).
    mirror : bool, optional
        Also run the left-right mirror image (`MIRROR_AXES`) and average the two softmax outputs,
        as the card's ``flip_left_right`` test-time augmentation does in `segloop.model.inference`.

    Returns
    -------
    np.ndarray of float32, shape (C, X, Y, Z)
        Class probabilities, cropped back to the image's extent.
    """
    import torch

    device = next(model.parameters()).device
    views = [()] + ([MIRROR_AXES] if mirror else [])
    probs = None
    for axes in views:
        img = np.ascontiguousarray(np.flip(image_norm, axes)) if axes else image_norm
        padded, crop = pad_to_multiple(img[None, None], divisor, min_shape=patch)
        with torch.no_grad():
            logits = model(torch.from_numpy(padded).to(device))
            p = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()[(slice(None),) + crop[2:]]
        p = np.flip(p, tuple(a + 1 for a in axes)) if axes else p
        probs = p if probs is None else probs + p
    return np.ascontiguousarray(probs / len(views), dtype=np.float32)


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
                   patch: tuple[int, int, int] | None = None, mirror: bool = False) -> dict:
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
    mirror : bool, optional
        Average the left-right mirror too (`predict_torch`).

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
        pred = predict_torch(model, img, divisor, patch, mirror).argmax(0)
        per_case[name] = dice_per_label(pred, lbl, labels)
    mean = {k: float(np.mean([d[k] for d in per_case.values()])) for k in labels}
    return {"mean_dice": mean, "mean_dice_all": float(np.mean(list(mean.values())))}


def _random_states(obj: Any, path: str = "aug", seen: set[int] | None = None) -> dict[str, np.random.RandomState]:
    """Every numpy RandomState inside an augmentation pipeline, by attribute path.

    MONAI's randomised transforms each draw from their own ``R`` (and wrap inner transforms with
    theirs), so the pipeline's random state is all of them; paths like
    ``aug.transforms[0].rand_affine.R`` name them stably for one pipeline definition.
    """
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return {}
    seen.add(id(obj))
    if isinstance(obj, np.random.RandomState):
        return {path: obj}
    out: dict[str, np.random.RandomState] = {}
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            out.update(_random_states(item, f"{path}[{i}]", seen))
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("monai", "segloop"):
        for key, value in vars(obj).items():
            out.update(_random_states(value, f"{path}.{key}", seen))
    return out


def _legacy_state(r: np.random.RandomState) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = r.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_legacy_state(r: np.random.RandomState, st: dict[str, Any]) -> None:
    r.set_state((st["name"], np.asarray(st["keys"], np.uint32), st["pos"], st["has_gauss"], st["cached"]))


def capture_random_state(rng: np.random.Generator, aug: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Snapshot every random stream a training run draws from.

    Parameters
    ----------
    rng : np.random.Generator
        The run's generator (case order, patch placement).
    aug : monai.transforms.Compose or None
        The augmentation pipeline; each of its transforms' RandomStates is captured.

    Returns
    -------
    json_state : dict
        JSON-ready: ``numpy`` (the generator's bit-generator state), ``numpy_global`` and ``python``
        (the global numpy and `random` states, which libraries may use), ``augmentation`` (path ->
        RandomState state).
    tensors : dict
        ``torch_rng`` (torch.ByteTensor, the CPU generator) and ``cuda_rng`` (list of ByteTensor, one
        per GPU; empty when CUDA was never initialised).
    """
    import torch

    version, internal, gauss = random.getstate()
    # `aug is not None`, never `if aug`: MONAI's Compose.__len__ builds a flattened Compose, which
    # re-seeds every member transform from fresh entropy and so silently breaks reproducibility
    json_state = {"numpy": rng.bit_generator.state, "numpy_global": _legacy_state(np.random.mtrand._rand),
                  "python": [version, list(internal), gauss],
                  "augmentation": {k: _legacy_state(r) for k, r in _random_states(aug).items()} if aug is not None else {}}
    cuda = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return json_state, {"torch_rng": torch.get_rng_state(), "cuda_rng": cuda}


def restore_random_state(json_state: dict[str, Any], tensors: dict[str, Any], rng: np.random.Generator,
                         aug: Any) -> None:
    """Put back a snapshot taken by `capture_random_state` (in place).

    Parameters
    ----------
    json_state, tensors : dict
        The snapshot.
    rng : np.random.Generator
        The run's generator; its state is replaced.
    aug : monai.transforms.Compose or None
        A pipeline built like the one captured; each RandomState is replaced by path.

    Raises
    ------
    SegLoopError
        When the pipeline's random streams are not the captured ones (another augmentation
        definition), so the continuation could not be the same run.
    """
    import torch

    rng.bit_generator.state = json_state["numpy"]
    _set_legacy_state(np.random.mtrand._rand, json_state["numpy_global"])
    version, internal, gauss = json_state["python"]
    random.setstate((version, tuple(internal), gauss))
    streams = _random_states(aug) if aug is not None else {}
    if set(streams) != set(json_state["augmentation"]):
        raise SegLoopError("the augmentation pipeline differs from the one the run was started with; "
                           "it cannot be resumed with this version of SegLoop")
    for key, r in streams.items():
        _set_legacy_state(r, json_state["augmentation"][key])
    torch.set_rng_state(tensors["torch_rng"])
    # GPU generators only matter to GPU-side randomness (none today: dropout is 0); restore them where the
    # same number of GPUs is there, and go on without them elsewhere
    if tensors.get("cuda_rng") and torch.cuda.is_available() and torch.cuda.device_count() == len(tensors["cuda_rng"]):
        torch.cuda.set_rng_state_all(tensors["cuda_rng"])


def save_resume_state(path: str | Path, model, optimizer, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Atomically write everything a run needs to continue (`RESUME_FILE`): tensors plus one JSON string.

    Parameters
    ----------
    path : str or pathlib.Path
        Target file; replaced whole or not at all, so a kill while writing leaves the previous epoch's.
    model : torch.nn.Module
        Its ``state_dict()``.
    optimizer : torch.optim.Optimizer
        Its ``state_dict()`` (moments and step counts: tensors and plain values).
    meta : dict
        JSON-serialisable: config record, epoch, step, elapsed seconds, best-so-far, history, random
        state (`capture_random_state`'s JSON part), whether the schedule is complete.
    tensors : dict
        The torch random states (`capture_random_state`'s tensor part).

    Returns
    -------
    None
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": tensors["torch_rng"], "cuda_rng": tensors["cuda_rng"], "meta_json": json.dumps(meta)}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_resume_state(path: str | Path) -> dict[str, Any]:
    """Read a `RESUME_FILE` (tensors and plain values only: ``weights_only=True``).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    dict
        ``state_dict``, ``optimizer``, ``torch_rng``, ``cuda_rng`` and ``meta`` (the parsed JSON).

    Raises
    ------
    pickle.UnpicklingError
        When the file holds objects other than tensors and plain containers.
    """
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    ckpt["meta"] = json.loads(ckpt.pop("meta_json"))
    return ckpt


def run_state(out_dir: str | Path) -> str:
    """Say whether a run folder holds nothing, a run that can go on, or a run whose schedule is complete.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        A run folder of `train`.

    Returns
    -------
    str
        "complete": ``summary.json`` says the schedule ran to its end (all epochs, or the time budget);
        "partial": a run was started there (``config.json`` or `RESUME_FILE`) and can be resumed;
        "empty": neither.
    """
    out = Path(out_dir)
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    complete = summary.get("complete")
    if complete is None:  # runs from before resumable training record only why they stopped
        complete = summary.get("state") == "finished" and summary.get("stopped") in ("completed", "time budget reached")
    if complete:
        return "complete"
    return "partial" if (out / "config.json").is_file() or (out / RESUME_FILE).is_file() else "empty"


def _int_keys(d: dict | None) -> dict | None:
    """A metrics dict read back from JSON, with its label keys as int again (as `evaluate_torch` made it)."""
    if not d:
        return d
    return {"mean_dice": {int(k): v for k, v in d["mean_dice"].items()}, "mean_dice_all": d["mean_dice_all"]}


def train(cfg: TrainConfig, train_cases: list[Case], val_cases: list[Case], out_dir: str | Path,
          on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
          resume: bool = False, session_minutes: float | None = None) -> dict:
    """Train, keeping the best checkpoint by validation Dice; returns a summary dict.

    Writes `config.json`, `history.json`, `progress.json`, `last.pt`, `best.pt` and `resume.pt` under
    out_dir. A crash leaves the last atomically written checkpoints intact, and ``resume=True``
    continues from the last completed epoch exactly as the uninterrupted run would have gone on.

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
        "loading", "resuming" (epoch) when resuming, then "training" once per epoch (epoch, epochs,
        loss, lr, elapsed_s, best_dice and, when validated, val_dice), then the summary.
    should_stop : callable, optional
        Polled after every epoch; True stops the run ("cancelled"; it can be resumed).
    resume : bool, optional
        Continue the run in `out_dir` from its `RESUME_FILE`: weights, optimiser, schedule position,
        best-so-far, history and every random state are restored, so the remaining epochs give what
        an uninterrupted run would have (bit for bit on the CPU with the same thread count; GPU
        kernels may not be deterministic).
        Without a `RESUME_FILE` (killed during its first epoch) the run starts from the beginning.
        A run whose schedule is complete (`run_state`) is not trained again: its summary is returned.
    session_minutes : float, optional
        Wall time this call may take: after an epoch, when another epoch of the same length would
        end past it, the run pauses (``state`` "paused") to be resumed in a later session. The
        schedule does not depend on it.

    Returns
    -------
    dict
        The summary, also written to ``summary.json``: ``state`` ("finished" or "paused"),
        ``stopped`` ("completed", "cancelled", "time budget reached" or "session time limit
        reached"), ``complete`` (bool: the schedule ran to its end), ``epochs_run`` (all sessions
        together), ``steps``, ``elapsed_s`` (training time of all sessions), ``best_epoch`` (0
        without validation), ``best_val`` (`evaluate_torch` result of that epoch, or None),
        ``resumed_from`` (the epoch this call started after; 0 for a fresh run) and ``checkpoint``
        (path of ``best.pt``).

    Raises
    ------
    segloop.errors.SegLoopError
        When resuming with a config or cases other than the run's (the message lists the
        differences), or when a case cannot be loaded (`segloop.errors.ScanError`).

    Notes
    -----
    Files under `out_dir`: ``config.json`` (`config_record`), ``progress.json``, ``history.json``
    (loss per epoch, validation Dice per validated epoch), ``last.pt`` (every epoch), ``best.pt``,
    `RESUME_FILE` (every epoch, written last) and ``summary.json``, each written atomically. Sets
    torch's global seed and, with ``cfg.threads``, its thread count. Randomness: case order, patch
    placement and "batched" augmentation from one numpy Generator seeded with ``cfg.seed``, "monai"
    augmentation from MONAI's per-transform RandomStates seeded with it, initial weights from torch's
    global generator.
    """
    import torch
    from tqdm import tqdm

    session_t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = config_record(cfg, train_cases, val_cases)
    state = load_resume_state(out / RESUME_FILE) if resume and (out / RESUME_FILE).is_file() else None
    if resume and state is None and run_state(out) == "complete":  # finished before resume.pt existed: keep it
        summary = json.loads((out / "summary.json").read_text())
        if on_progress:
            on_progress(summary)
        return summary
    if state is not None:
        diffs = config_differences(state["meta"]["config"], record)
        if diffs:
            raise SegLoopError(f"cannot resume {out}: the run was started with other settings ({'; '.join(diffs)}); "
                               "resume it with its own settings, or train into a new folder")
        if state["meta"]["complete"] and (out / "summary.json").is_file():
            summary = json.loads((out / "summary.json").read_text())
            if on_progress:
                on_progress(summary)
            return summary
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    divisor = size_divisor(cfg.architecture)
    atomic_write_json(out / "config.json", record)

    def report(event: dict) -> None:
        atomic_write_json(out / "progress.json", event)
        if on_progress:
            on_progress(event)

    report({"state": "loading", "message": f"loading {len(train_cases)} training and {len(val_cases)} validation cases"})
    train_data = [load_case_arrays(c, cfg.normalization) for c in train_cases]
    val_data = [(c.name, *load_case_arrays(c, cfg.normalization)) for c in val_cases]
    foreground = [np.argwhere(lbl > 0) for _, lbl in train_data] if cfg.foreground_fraction > 0 else None

    model = build_network(cfg.architecture)
    if cfg.base_checkpoint:
        base_state, _ = load_checkpoint(cfg.base_checkpoint)
        model.load_state_dict(base_state)
    model.to(device)
    loss_fn = segmentation_loss()  # DiceCE; nnU-Net's weighted sum over a deep-supervision stack
    teacher = None
    if cfg.teacher:
        with torch.random.fork_rng(devices=[]):  # building it must not move the run's random streams
            teacher = load_model(cfg.teacher)[0].to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    engine = AugmentEngine(cfg.augmentation)
    aug = (_augmenter(cfg.patch, cfg.seed, cfg.resolution_augmentation)
           if cfg.augment and engine is AugmentEngine.MONAI else None)
    batch_params = AugmentParams(p_resolution=cfg.resolution_augmentation)
    batch_aug = cfg.augment and engine is AugmentEngine.BATCHED

    steps_per_epoch = max(1, math.ceil(len(train_data) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    history: dict[str, list] = {"epoch": [], "loss": [], "val_epoch": [], "val_dice": [], "elapsed_s": []}
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "metrics": None}
    step, start_epoch, elapsed_before = 0, 0, 0.0
    if state is not None:
        meta = state["meta"]
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        restore_random_state(meta["random_state"], state, rng, aug)
        start_epoch, step, elapsed_before = int(meta["epoch"]), int(meta["step"]), float(meta["elapsed_s"])
        history = meta["history"]
        best = {**meta["best"], "metrics": _int_keys(meta["best"]["metrics"])}
        report({"state": "resuming", "epoch": start_epoch, "epochs": cfg.epochs,
                "message": f"resuming after epoch {start_epoch} of {cfg.epochs}"})
    # the schedule's clock is training time over all sessions, so a resumed time budget ends where it would have
    t0 = time.perf_counter() - elapsed_before
    meta_base = {"architecture": cfg.architecture, "normalization": cfg.normalization, "num_labels": cfg.num_labels,
                 "size_divisor": divisor, "patch": list(cfg.patch)}
    stopped, complete = "completed", bool(state is not None and state["meta"]["complete"])
    # a schedule that ended by its time budget is complete before its epoch count: nothing is left to run
    bar = tqdm(range(start_epoch, start_epoch if complete else cfg.epochs), desc="train", unit="epoch", disable=None,
               initial=start_epoch, total=cfg.epochs)
    epoch, lr = start_epoch - 1, cfg.lr
    for epoch in bar:
        epoch_t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_data))
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 0:
                continue
            imgs, lbls = [], []
            for i in idx:
                im, lb = _sample_patch(*train_data[i], foreground[i] if foreground else None, cfg.patch,
                                       cfg.foreground_fraction, rng)
                if aug is not None:
                    d = aug({"image": im[None], "label": lb[None]})
                    im, lb = np.asarray(d["image"]), np.asarray(d["label"])
                else:
                    im, lb = im[None], lb[None]
                imgs.append(np.asarray(im, np.float32)); lbls.append(np.asarray(lb, np.float32))
            x = torch.from_numpy(np.stack(imgs)).to(device)
            y = torch.from_numpy(np.stack(lbls)).round().to(device)
            if batch_aug:
                x, y = augment_batch(x, y, rng, batch_params)
            elapsed = time.perf_counter() - t0
            frac = step / total_steps
            if cfg.time_budget_min:
                frac = max(frac, elapsed / (cfg.time_budget_min * 60))
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * max(0.0, 1 - frac) ** 0.9
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                logits = model(x)
                loss = loss_fn(logits, y)
                if teacher is not None:
                    with torch.no_grad():
                        taught = torch.softmax(teacher(x).float(), dim=1)
                    loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * distillation_loss(logits, taught)
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
        complete = epoch + 1 == cfg.epochs or out_of_time
        event = {"state": "training", "epoch": epoch + 1, "epochs": cfg.epochs, "loss": history["loss"][-1],
                 "lr": lr, "elapsed_s": round(elapsed, 1), "best_dice": best["score"] if best["score"] >= 0 else None}
        if val_data and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
            metrics = evaluate_torch(model, val_data, cfg.num_labels, divisor, tuple(cfg.patch), cfg.val_tta)
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
        now = time.perf_counter()
        pause = (not last_epoch and session_minutes is not None
                 and (now - session_t0) + (now - epoch_t0) > session_minutes * 60)
        random_json, random_tensors = capture_random_state(rng, aug)
        # written last: a kill before this line repeats the epoch on resume, which gives the same weights
        save_resume_state(out / RESUME_FILE, model, opt, {
            "config": record, "epoch": epoch + 1, "step": step, "elapsed_s": now - t0, "complete": complete,
            "best": best, "history": history, "random_state": random_json}, random_tensors)
        report(event)
        if cancel and not complete:
            stopped = "cancelled"
            break
        if out_of_time:
            stopped = "time budget reached"
            break
        if pause:
            stopped = "session time limit reached"
            break
    if not val_data:
        save_checkpoint(out / "best.pt", model, {**meta_base, "epoch": epoch + 1})
    paused = stopped == "session time limit reached"
    summary = {"state": "paused" if paused else "finished", "stopped": stopped, "complete": complete,
               "epochs_run": epoch + 1, "steps": step, "elapsed_s": round(time.perf_counter() - t0, 1),
               "best_epoch": best["epoch"], "best_val": best["metrics"], "resumed_from": start_epoch,
               "checkpoint": str(out / "best.pt")}
    atomic_write_json(out / "summary.json", summary)
    report(summary)
    return summary


def combine_runs(run_dirs: list[str | Path], out_dir: str | Path, checkpoint: str = "last.pt") -> dict:
    """Make an ensemble run folder from finished runs on the same split, or from the folds of one
    cross-validation: one checkpoint whose network averages the members' softmax, plus
    config/summary/split records for export and the model card.

    Folds of one cross-validation (their ``split.json`` name the same ``cross_validation`` folder,
    each a different fold) trained on different cases, so the ensemble has no held-out case: its
    split lists every case any member trained on as ``train`` and none as ``validation``, and the
    cross-validation's ``cv_summary.json`` is copied beside it as ``cross_validation.json``, which
    `segloop.training.export.export_run` turns into the card's metrics.

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
        When the runs neither share one validation split nor are distinct folds of one cross-validation.
    FileNotFoundError
        When a run lacks one of the files above.

    Notes
    -----
    Files under `out_dir`: ``best.pt`` (the ensemble), ``split.json`` (the shared split, or for
    folds the union described above), ``config.json`` (the first member's config plus
    ``ensemble_of`` and ``member_configs``; for folds with its case lists replaced by that union),
    ``summary.json`` and, for folds, ``cross_validation.json`` (when the cross-validation's summary
    exists).
    """
    runs = [Path(r) for r in run_dirs]
    splits = [json.loads((r / "split.json").read_text()) for r in runs]
    cv_roots = {sp.get("cross_validation") for sp in splits}
    folds_of_one_cv = (len(cv_roots) == 1 and None not in cv_roots
                       and len({sp.get("fold") for sp in splits}) == len(splits))
    if not folds_of_one_cv and any(sp.get("validation") != splits[0].get("validation") for sp in splits):
        raise ValueError("ensemble members must share one validation split, or be different folds of one "
                         "cross-validation")
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
    split, cases = splits[0], {}
    if folds_of_one_cv:
        trained = sorted(set().union(*(sp.get("train") or [] for sp in splits)))
        split = {"seed": splits[0].get("seed"), "n_folds": splits[0].get("n_folds"), "fold": None,
                 "folds": sorted(sp.get("fold") for sp in splits), "train": trained, "validation": [],
                 "data": splits[0].get("data"), "cross_validation": splits[0]["cross_validation"]}
        cases = {"train_cases": trained, "val_cases": []}
        cv_summary = Path(splits[0]["cross_validation"]) / "cv_summary.json"
        if cv_summary.is_file():
            atomic_write_json(out / "cross_validation.json", {**json.loads(cv_summary.read_text()),
                                                              "ensemble_of_folds": split["folds"]})
    atomic_write_json(out / "split.json", split)
    atomic_write_json(out / "config.json", {**{k: v for k, v in configs[0].items() if k != "architecture"},
                                            **cases, "ensemble_of": [str(r) for r in runs],
                                            "member_configs": configs})
    summary = {"state": "finished", "stopped": "ensemble of finished runs",
               "epochs_run": [sm.get("epochs_run") for sm in summaries],
               "elapsed_s": round(sum(sm.get("elapsed_s") or 0 for sm in summaries), 1),
               "best_epoch": [m.get("epoch") for m in metas], "checkpoint": str(out / "best.pt")}
    atomic_write_json(out / "summary.json", summary)
    return summary
