"""Run an ONNX segmentation model on a scan with ONNX Runtime (CUDA when it really loads, else CPU).

The preprocessing is `segloop.model.preprocessing`, exactly what training used; the model card says
which normalisation and size divisor apply. Sessions are cached per model file.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from segloop.config import WEIGHTS_DIR
from segloop.errors import ModelError
from segloop.io.volume import Volume
from segloop.model.card import Augmentation, ModelCard, card_path_for, check_scan_fits, load_card
from segloop.model.preprocessing import normalize, pad_to_multiple
from segloop.model.runtime import cuda_fallback_reason, cuda_status, onnxruntime
from segloop.model.sliding_window import sliding_window_inference

DEFAULT_MODEL = WEIGHTS_DIR / "hippocampus-unet-v1.onnx"

#: Test-time augmentations a card may list: mirror images along these RAS axes, averaged.
PLANE_FLIP_AXES = {Augmentation.FLIP_LEFT_RIGHT: 0}

#: Volumes up to this many voxels run in one pass; larger ones by sliding window.
WHOLE_VOLUME_MAX_VOXELS = 128**3


@dataclass
class Prediction:
    """A model's output on one scan, all arrays on the scan's RAS grid.

    Parameters
    ----------
    labels : np.ndarray of uint8, shape (X, Y, Z), RAS voxel order
        Most probable label per voxel (after the largest-component clean-up when it applied).
    probabilities : np.ndarray of float32, shape (C, X, Y, Z)
        Softmax probabilities per class, averaged over the test-time augmentations; sum to 1 over C.
        ``labels`` is their argmax before any clean-up.
    uncertainty : np.ndarray of float32, shape (X, Y, Z)
        Entropy of `probabilities` divided by log(C): 0 = certain, 1 = uniform over the classes.
    provider : str
        The ONNX Runtime provider that ran: "CUDAExecutionProvider" or "CPUExecutionProvider".
    provider_note : str
        Plain-words note on where it ran and, on the CPU, why not on the GPU.
    seconds : float
        Wall time of `predict` (including loading the model on first use).
    card : ModelCard
        The model's card.
    warnings : list of str
        Plain-English warnings from `check_scan_fits` (spacing or size far from the training data).
    """

    labels: np.ndarray  # uint8 (X, Y, Z)
    probabilities: np.ndarray  # float32 (C, X, Y, Z)
    uncertainty: np.ndarray  # float32 (X, Y, Z), normalised entropy in 0..1
    provider: str
    provider_note: str
    seconds: float
    card: ModelCard
    warnings: list[str] = field(default_factory=list)

    @property
    def mean_foreground_uncertainty(self) -> float:
        """Mean uncertainty where the model predicts any label (0 when it predicts none).

        Returns
        -------
        float
            Mean of `uncertainty` over ``labels > 0``, in 0..1; 0.0 when no voxel is foreground.
        """
        fg = self.labels > 0
        return float(self.uncertainty[fg].mean()) if fg.any() else 0.0


@dataclass
class _Session:
    session: object
    provider: str
    note: str
    card: ModelCard
    lock: threading.Lock


_SESSIONS: dict[tuple[str, float], _Session] = {}
_SESSIONS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Return the path of the model shipped in weights/.

    Returns
    -------
    pathlib.Path
        ``<project>/weights/hippocampus-unet-v1.onnx`` (`DEFAULT_MODEL`); whether it exists is not checked.
    """
    return DEFAULT_MODEL


#: Threads of each new ONNX Runtime session; unset or 0: one per core. A process pool of N workers sets it
#: so that N sessions share the cores instead of each taking them all (`segloop.batch.worker`).
THREADS_ENV = "SEGLOOP_ORT_THREADS"


def session_threads() -> int:
    """Intra-op threads for a new session: SEGLOOP_ORT_THREADS when set, else the number of cores."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return max(1, int(value)) if value.isdigit() and int(value) > 0 else max(1, os.cpu_count() or 1)


def _make_session(model_path: Path) -> _Session:
    ort = onnxruntime()
    card = load_card(card_path_for(model_path))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = session_threads()
    opts.log_severity_level = 3
    usable, why = cuda_status()
    try:
        if usable:
            sess = ort.InferenceSession(str(model_path), opts,
                                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            if sess.get_providers()[0] == "CUDAExecutionProvider":
                return _Session(sess, "CUDAExecutionProvider", "running on the GPU (CUDA)", card, threading.Lock())
            why = cuda_fallback_reason()
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{model_path.name}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
    return _Session(sess, "CPUExecutionProvider", f"running on the CPU: {why}", card, threading.Lock())


def get_session(model_path: str | Path) -> _Session:
    """Return the cached ONNX Runtime session for a model file (reloaded when the file changes).

    The first call for a file (or a new modification time) reads its card and creates the session:
    CUDA first when `cuda_status` allows, else (or when CUDA does not load) the CPU; ONNX Runtime
    gets one thread per core. Safe to call from several threads.

    Parameters
    ----------
    model_path : str or pathlib.Path
        The ONNX file; its card must sit beside it (`card_path_for`).

    Returns
    -------
    _Session
        Holds ``session`` (the onnxruntime.InferenceSession), ``provider`` (name of the provider in
        use), ``note`` (plain words on where it runs), ``card`` (ModelCard) and ``lock`` (a
        threading.Lock to hold while running it).

    Raises
    ------
    ModelError
        When the file is missing, its card is missing or invalid, or ONNX Runtime cannot load it.
    """
    path = Path(model_path).resolve()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    key = (str(path), path.stat().st_mtime)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _make_session(path)
        return _SESSIONS[key]


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def _run_logits(sess: _Session, image: np.ndarray, divisor: int, patch: list[int] | None) -> np.ndarray:
    """Logits (C, X, Y, Z) of a normalised image: one pass, or a sliding window for big volumes."""
    run = sess.session.run  # type: ignore[attr-defined]
    if image.size <= WHOLE_VOLUME_MAX_VOXELS:
        # at least the training patch: InstanceNorm then sees the same amount of padding as in training
        x, crop = pad_to_multiple(image[None, None], divisor, min_shape=tuple(patch) if patch else None)
        with sess.lock:
            out = run(None, {"image": x})[0]
        return out[0][(slice(None),) + crop[2:]]
    # windows of the training patch size: InstanceNorm statistics then match what the model saw in training
    roi = [int(np.ceil(p / divisor) * divisor) for p in (patch or [96, 96, 96])]
    x, crop = pad_to_multiple(image[None, None], divisor, min_shape=tuple(roi))

    def predictor(window: np.ndarray) -> np.ndarray:
        with sess.lock:
            return run(None, {"image": np.ascontiguousarray(window, dtype=np.float32)})[0]

    out = sliding_window_inference(x.astype(np.float32, copy=False), roi, predictor, overlap=0.25)
    return out[0][(slice(None),) + crop[2:]]


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Per label, keep only the largest 3D connected component (26-connectivity).

    Parameters
    ----------
    labels : np.ndarray of int, shape (X, Y, Z)
        Label map; 0 is background.

    Returns
    -------
    np.ndarray, same shape and dtype as `labels`
        A copy in which every other component of each label is set to 0 (of equal-sized largest
        components, the first found in scan order is kept).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([1, 1, 0, 1, 2, 0, 2], np.uint8).reshape(7, 1, 1)
    >>> keep_largest_component(labels).ravel()
    array([1, 1, 0, 0, 2, 0, 0], dtype=uint8)
    """
    out = labels.copy()
    structure = np.ones((3, 3, 3), bool)
    for value in np.unique(labels):
        if value == 0:
            continue
        comp, n = ndimage.label(labels == value, structure=structure)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            out[(comp != sizes.argmax()) & (comp > 0)] = 0
    return out


def predict(volume: Volume, model_path: str | Path | None = None, largest_component: bool | None = None) -> Prediction:
    """Segment a scan; returns labels, probabilities and uncertainty on the scan's RAS grid.

    The scan is normalised as the card says; a volume of up to `WHOLE_VOLUME_MAX_VOXELS` runs in one
    pass (padded to the size divisor and at least the training patch), a larger one by sliding
    window over training-patch-sized windows (overlap 0.25, Gaussian weights, as MONAI's
    `sliding_window_inference`; see `segloop.model.sliding_window`). Each test-time
    augmentation of the card (a left-right flip) is run too and the probabilities averaged.

    Parameters
    ----------
    volume : Volume
        The scan: ``array`` of float32, shape (X, Y, Z), RAS voxel order; ``spacing`` in mm.
    model_path : str or pathlib.Path, optional
        The ONNX model, with its card beside it; default: the shipped model (`DEFAULT_MODEL`).
    largest_component : bool, optional
        Keep only the largest connected component per label; None: as the card's processing says.

    Returns
    -------
    Prediction
        Labels, probabilities and uncertainty on the scan's grid, with the provider used, the time
        taken, the card and any warnings about the scan.

    Raises
    ------
    ModelError
        When the model or its card cannot be loaded, the scan does not fit the model (not 3D, wrong
        number of channels), or the model's output has a different number of classes than its card.

    Examples
    --------
    >>> from segloop.io.readers import load_scan
    >>> pred = predict(load_scan("hippocampus_001.nii.gz"))       # doctest: +SKIP
    >>> pred.labels.shape == pred.uncertainty.shape, pred.provider   # doctest: +SKIP
    (True, 'CPUExecutionProvider')
    """
    t0 = time.perf_counter()
    sess = get_session(model_path or DEFAULT_MODEL)
    card = sess.card
    warnings = check_scan_fits(card, volume.shape, volume.spacing)
    divisor = card.input.size_divisor
    image = normalize(volume.array, card.input.normalization)
    probs = None
    flips = card.processing.test_time_augmentation
    views = [()] + [(PLANE_FLIP_AXES[f],) for f in flips if f in PLANE_FLIP_AXES]
    for axes in views:
        logits = _run_logits(sess, np.flip(image, axes) if axes else image, divisor, card.input.patch)
        if logits.shape[0] != card.num_classes:
            raise ModelError(f"model {card.name} produced {logits.shape[0]} classes, its card lists {card.num_classes}")
        p = _softmax(logits.astype(np.float32, copy=False))
        p = np.flip(p, tuple(a + 1 for a in axes)) if axes else p
        probs = p if probs is None else probs + p
    probs = np.ascontiguousarray(probs / len(views), dtype=np.float32)
    labels = probs.argmax(axis=0).astype(np.uint8)
    if largest_component is None:
        largest_component = card.processing.largest_component
    if largest_component:
        labels = keep_largest_component(labels)
    entropy = -(probs * np.log(np.clip(probs, 1e-8, 1.0))).sum(axis=0)
    uncertainty = (entropy / np.log(probs.shape[0])).astype(np.float32)
    return Prediction(labels=labels, probabilities=probs, uncertainty=uncertainty, provider=sess.provider,
                      provider_note=sess.note, seconds=time.perf_counter() - t0, card=card, warnings=warnings)
