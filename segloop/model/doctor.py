"""`python -m segloop doctor`: versions, execution providers, and what a real session ran on, with the fix."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

import numpy as np

from segloop.model.inference import get_session
from segloop.model.runtime import (FIX_GPU, cuda_status, driver_found, onnxruntime, runtime_package,
                                   training_unavailable)


def doctor_report(model_path: str | Path) -> list[tuple[str, str]]:
    """What `python -m segloop doctor` prints: (item, value) pairs, the last ones the verdict and the fix.

    Starts a real session of `model_path` and runs it once on a small input, so "used" is what ONNX
    Runtime really ran on, not what was asked for.
    """
    rows = [("python", sys.version.split()[0]), ("platform", f"{platform.system()} {platform.machine()}")]
    for name in ("segloop", "numpy", "torch", "monai", "SimpleITK", "nibabel"):
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("training", training_unavailable() or "installed (train, cv, finetune, export)"))
    rows.append(("onnxruntime", runtime_package()))
    ort = onnxruntime()
    rows.append(("providers available", ", ".join(ort.get_available_providers())))
    found, why = driver_found()
    rows.append(("NVIDIA driver", "found" if found else why))
    cuda_status()  # preloads the CUDA libraries before the session, as inference does
    sess = get_session(model_path)
    patch = sess.card.input.patch or (48, 64, 48)
    sess.session.run(None, {"image": np.zeros((1, 1, *patch), np.float32)})
    rows.append(("session uses", ", ".join(sess.session.get_providers())))
    rows.append(("verdict", sess.note))
    if sess.provider != "CUDAExecutionProvider" and sys.platform != "darwin":
        fix = FIX_GPU if found else f"install the NVIDIA driver (`nvidia-smi` must work), then {FIX_GPU}"
        rows.append(("to use a GPU", fix))
    return rows
