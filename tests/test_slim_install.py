"""The core works without the "train" extra: no PyTorch, MONAI or onnx for loading, inference, evaluation.

A slim install (`pip install ".[app,cpu]"`, the Space's image) leaves them out. Each check runs in a
fresh interpreter where importing torch, monai or onnx fails, as it does there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCK = textwrap.dedent("""
    import sys
    for name in ("torch", "monai", "onnx"):
        sys.modules[name] = None  # `import torch` raises ImportError, find_spec says: not installed
""")


def run_without_training(code: str, timeout: int = 600) -> dict:
    """Run `code` (which prints one JSON object last) in a fresh interpreter without torch, MONAI and onnx."""
    res = subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_module_imports_without_the_training_stack():
    """Nothing imports torch, MONAI or onnx at module level, training's modules included (the CLI imports them)."""
    out = run_without_training("""
        import importlib, json, pkgutil
        import segloop
        names = sorted(m.name for m in pkgutil.walk_packages(segloop.__path__, "segloop.") if m.name != "segloop.__main__")
        for name in names:
            importlib.import_module(name)
        for name in ("components.charts", "components.store", "components.segmentation", "components.volume_view"):
            importlib.import_module(name)
        print(json.dumps({"n": len(names), "torch": sys.modules.get("torch") is not None}))
    """)
    assert out["n"] > 40 and out["torch"] is False


def test_predict_and_evaluate_without_the_training_stack(msd_dir, shipped_model):
    """One pass and the sliding window both run on ONNX Runtime alone; HD95 is scipy's."""
    out = run_without_training(f"""
        import json
        import numpy as np
        import segloop.model.inference as inf
        from segloop.io.readers import load_label, load_scan
        from segloop.model.metrics import evaluate_case
        from segloop.model.runtime import require_training, training_unavailable
        from segloop.errors import SegLoopError

        scan = load_scan({str(msd_dir / "imagesTr" / "hippocampus_001.nii.gz")!r})
        ref = load_label({str(msd_dir / "labelsTr" / "hippocampus_001.nii.gz")!r}, reference=scan).array
        one = inf.predict(scan, {str(shipped_model)!r})
        inf.WHOLE_VOLUME_MAX_VOXELS = 1  # force the sliding window
        slid = inf.predict(scan, {str(shipped_model)!r})
        res = evaluate_case(slid.labels, ref, [1, 2], scan.spacing)
        try:
            require_training()
            message = ""
        except SegLoopError as exc:
            message = str(exc)
        print(json.dumps({{"dice": [res["dice"][1], res["dice"][2]], "hd95": [res["hd95"][1], res["hd95"][2]],
                          "same": float((one.labels == slid.labels).mean()), "message": message,
                          "reason": training_unavailable()}}))
    """)
    assert min(out["dice"]) > 0.7 and max(out["hd95"]) < 10
    assert out["same"] > 0.99  # the model's patch covers a hippocampus crop: one window, nearly one pass
    assert out["message"] == out["reason"]
    assert "pip install 'segloop[train]'" in out["message"] and "PyTorch" in out["message"]


def test_doctor_reports_training_as_not_installed(shipped_model):
    out = run_without_training(f"""
        import json
        from segloop.model.doctor import doctor_report
        print(json.dumps(dict(doctor_report({str(shipped_model)!r}))))
    """)
    assert "segloop[train]" in out["training"]
    assert out["session uses"].startswith(("CPUExecutionProvider", "CUDAExecutionProvider"))


def test_training_is_reported_available_here():
    """The development environment has the train extra (requirements.txt): nothing is reported missing."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    pytest.importorskip("onnx")
    from segloop.model.runtime import require_training, training_unavailable

    assert training_unavailable() is None
    require_training()


def test_training_commands_say_what_to_install_without_the_training_stack(tmp_path, msd_dir):
    """`segloop train/cv/export/ensemble/finetune` on a slim install: one line naming the extra, exit 2."""
    out = run_without_training(f"""
        import contextlib, io, json
        from segloop.cli import main
        results = {{}}
        for argv in (["cv", {str(msd_dir)!r}, "--out", {str(tmp_path / "cv")!r}], ["train", "--out", {str(tmp_path / "t")!r}],
                     ["ensemble", "a", "b", "--out", {str(tmp_path / "e")!r}]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(argv)
            results[argv[0]] = [rc, err.getvalue()]
        print(json.dumps(results))
    """)
    for command, (rc, err) in out.items():
        assert rc == 2, command
        assert err.strip().splitlines() == [err.strip()] and "pip install 'segloop[train]'" in err, command
    assert not (tmp_path / "cv").exists()  # nothing was started
