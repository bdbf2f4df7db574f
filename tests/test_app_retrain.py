"""The Retrain page through AppTest: a tiny real fine-tuning run from the Start button to a registered,
inactive new version, with progress and the parent-vs-new comparison on the fixed validation set."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apptest_tables import table as _table  # noqa: E402
from test_model_registry import make_tiny_model  # noqa: E402

from segloop.io.readers import load_label, load_scan  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import save_label_version  # noqa: E402
from segloop.store.registry import register_model  # noqa: E402

PAGE = str(ROOT / "pages" / "retrain.py")
VALIDATION = ["hippocampus_011", "hippocampus_014", "hippocampus_001"]  # 001 is also corrected: left out


@pytest.fixture()
def env(tmp_path, monkeypatch, msd_dir):
    pytest.importorskip("torch", reason="fine-tuning needs the train extra (pip install 'segloop[train]')")
    ws = tmp_path / "ws"
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    store = Datastore(workspace=ws)
    tiny = make_tiny_model(tmp_path / "m", stem="hippo-tiny")
    card = json.loads(tiny["card"].read_text())
    card["split"] = {"train": ["hippocampus_003", "hippocampus_007"], "validation": VALIDATION}
    tiny["card"].write_text(json.dumps(card))
    register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"], activate=True)
    for name in ("hippocampus_001", "hippocampus_008"):
        scan = store.add_scan(name, msd_dir / "imagesTr" / f"{name}.nii.gz", "imported")
        ref = load_scan(scan.image_path)
        lbl = load_label(msd_dir / "labelsTr" / f"{name}.nii.gz", reference=ref).array
        save_label_version(store, scan.id, lbl, ref, "correction", author="ann")
    return store


def test_start_a_tiny_run_follow_it_and_get_an_inactive_version(env):
    store = env
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="base_model").value.version == 1
    ids = [store.scans_named(n)[0].id for n in ("hippocampus_001", "hippocampus_008")]
    assert at.multiselect(key="train_cases").value == ids
    assert any("Fixed validation set: 2 cases" in c.value for c in at.caption)  # 001 is trained on
    at.number_input(key="epochs").set_value(2)
    at.number_input(key="val_every").set_value(1)
    at.number_input(key="batch_size").set_value(2)
    at.checkbox(key="augment").uncheck()
    at.button(key="start_btn").click().run()
    assert not at.exception, at.exception
    assert any("Run #1 started" in s.value for s in at.success)
    run = store.runs()[0]
    assert run.params["epochs"] == 2 and [c["name"] for c in run.params["val_cases"]] == VALIDATION[:2]

    # a second start while the first runs is refused with a clear message
    at.button(key="start_btn").click().run()
    assert any("still" in e.value and "wait for it or cancel it" in e.value for e in at.error)
    assert len(store.runs()) == 1

    saw_progress = False
    deadline = time.time() + 120
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if at.get("progress"):
            saw_progress = True
        if store.run(run.id).status not in ("queued", "running"):
            break
        time.sleep(1)
    at.run()
    status = store.run(run.id)
    assert status.status == "finished", status.error
    assert saw_progress
    assert at.get("progress")[0].proto.value == 100
    assert "Epoch 2 / 2" in at.get("progress")[0].proto.text
    # loss and validation Dice curves, then the comparison chart
    assert len(at.get("plotly_chart")) == 2
    cmp = _table(at, "Label")
    assert list(cmp.columns) == ["Label", "Parent v1", "New v2", "Change"]
    assert list(cmp["Label"]) == ["anterior", "posterior", "mean"]
    assert any("Registered as version 2, NOT activated" in s.value for s in at.success)
    models = store.models()
    assert [m.version for m in models] == [1, 2] and models[0].active and not models[1].active
    # state survives a reload: a fresh session shows the same finished run
    at2 = AppTest.from_file(PAGE, default_timeout=60).run()
    assert any("Registered as version 2" in s.value for s in at2.success)


def test_without_torch_the_page_says_how_to_install_training_and_cannot_start(tmp_path, monkeypatch, msd_dir):
    """A slim install (`.[app,cpu]`, the Space's) has no PyTorch, MONAI or onnx: the page says so, Start is off.

    Runs in a slim environment as it is, and here with the three hidden; the shipped model is the base."""
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    for module in ("torch", "monai", "onnx"):
        monkeypatch.setitem(sys.modules, module, None)  # import and find_spec now both say: not installed
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="base_model").value.version == 1  # the page still shows the plan
    warning = next(w.value for w in at.warning if "Training needs PyTorch and MONAI" in w.value)
    assert "pip install 'segloop[train]'" in warning and "PyTorch, MONAI, onnx" in warning
    assert at.button(key="start_btn").disabled
    assert Datastore(workspace=tmp_path / "ws").runs() == []
