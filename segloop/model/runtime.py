"""Which ONNX Runtime execution provider can run here, why (not) CUDA, and the `segloop doctor` report.

Linux and Windows get `onnxruntime-gpu` (CUDA when the NVIDIA driver, the CUDA runtime and cuDNN all
load, else the CPU); macOS gets `onnxruntime` (CPU). CoreML is not used on macOS: the model is a 3D
U-Net and ONNX Runtime's CoreML provider does not take 3D convolutions, so it would hand every
convolution back to the CPU. The CUDA and cuDNN libraries can come from the package registry
(`requirements-gpu.txt`: `onnxruntime-gpu[cuda,cudnn]`); `onnxruntime.preload_dlls()` loads them
from there before the first session is made.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import platform
import sys
import threading

from segloop.errors import ModelError, SegLoopError

#: The NVIDIA driver's library, per platform (`sys.platform`).
DRIVER_LIBRARY = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}
#: What `pip install` line fixes a missing piece.
FIX_GPU = "pip install -r requirements-gpu.txt   (or: pip install 'segloop[gpu]')"
FIX_TRAIN = "pip install 'segloop[train]'"
#: The modules of the "train" extra (import name: what it is called), which only training and export use.
TRAINING_MODULES = {"torch": "PyTorch", "monai": "MONAI", "onnx": "onnx"}

_PRELOAD_LOCK = threading.Lock()
_preloaded: list[str] = []  # "" once tried, or the error text of the attempt


def onnxruntime():
    """The onnxruntime module, or a ModelError that says how to install it."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 - the runtime is an extra (cpu or gpu); say which is missing
    except ImportError:
        raise ModelError("ONNX Runtime is not installed: pip install 'segloop[cpu]' (or 'segloop[gpu]' on a machine "
                         "with an NVIDIA GPU)") from None
    return ort


def training_unavailable() -> str | None:
    """Why training cannot run here (PyTorch, MONAI or onnx not installed), or None when it can.

    Viewing, segmenting, correcting and evaluating never need them: inference runs on ONNX Runtime.
    Training, cross-validation, fine-tuning and ONNX export do; they come with the "train" extra.
    Only looks the modules up (nothing is imported), so it is cheap enough for every page run.

    Returns
    -------
    str or None
        One sentence naming what is missing and the install command; None when all are installed.

    Examples
    --------
    >>> training_unavailable() is None or "segloop[train]" in training_unavailable()
    True
    """
    missing = [name for module, name in TRAINING_MODULES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"Training needs PyTorch and MONAI (and onnx to export); not installed: {', '.join(missing)}. Install: {FIX_TRAIN}"


def require_training() -> None:
    """Raise a SegLoopError saying how to install training when `training_unavailable` says it is missing."""
    reason = training_unavailable()
    if reason:
        raise SegLoopError(reason)


def runtime_package() -> str:
    """Which ONNX Runtime distribution is installed, e.g. 'onnxruntime-gpu 1.31.1' (or 'none')."""
    found = []
    for name in ("onnxruntime-gpu", "onnxruntime"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return " + ".join(found) or "none"


def driver_found() -> tuple[bool, str]:
    library = DRIVER_LIBRARY.get(sys.platform)
    if library is None:
        return False, f"CUDA does not exist on {platform.system()}; SegLoop runs on the CPU there"
    try:
        ctypes.CDLL(library)
    except OSError:
        return False, f"no NVIDIA GPU driver was found on this machine ({library} is missing)"
    return True, ""


def preload_cuda() -> str:
    """Load the CUDA and cuDNN libraries shipped as pip packages, once per process; returns "" or the error."""
    ort = onnxruntime()
    with _PRELOAD_LOCK:
        if not _preloaded:
            try:
                ort.preload_dlls()
                _preloaded.append("")
            except Exception as exc:  # noqa: BLE001 - any failure only means CUDA will not load; say why
                _preloaded.append(f"{type(exc).__name__}: {exc}")
        return _preloaded[0]


def cuda_status() -> tuple[bool, str]:
    """Return (CUDA worth trying?, plain-words reason) without starting a session.

    Checks that this onnxruntime build has the CUDA provider and that the NVIDIA driver library loads,
    then preloads the CUDA runtime and cuDNN from their pip packages. Whether CUDA really runs is only
    known when a session starts (see `segloop.model.inference`).

    Returns
    -------
    usable : bool
        True when a CUDA session is worth trying.
    reason : str
        Why not, for the user; "" when `usable`.
    """
    ort = onnxruntime()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if sys.platform == "darwin":
            return False, "macOS has no CUDA; ONNX Runtime runs on the CPU"
        return False, f"this onnxruntime build has no CUDA support ({runtime_package()}); to use a GPU: {FIX_GPU}"
    found, why = driver_found()
    if not found:
        return False, why
    preload_cuda()
    return True, ""


def cuda_fallback_reason() -> str:
    """Why a CUDA session fell back to the CPU although the driver is there: which library did not load."""
    error = preload_cuda()
    missing = []
    if sys.platform == "linux":
        for lib in ("libcudart.so.13", "libcublas.so.13", "libcudnn.so.9"):
            try:
                ctypes.CDLL(lib)
            except OSError:
                missing.append(lib)
    detail = f"missing: {', '.join(missing)}" if missing else (error or "see the onnxruntime log")
    return f"the CUDA 13 runtime or cuDNN 9 libraries could not be loaded ({detail}); to install them: {FIX_GPU}"
