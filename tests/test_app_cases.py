"""The Cases page through AppTest on the real MSD folder: import, status, agreement, review queue, approve."""

from __future__ import annotations

import sys
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

PAGE = str(ROOT / "pages" / "cases.py")


@pytest.fixture()
def env(tmp_path, monkeypatch, msd_dir):
    ws = tmp_path / "ws"
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    store = Datastore(workspace=ws)
    tiny = make_tiny_model(tmp_path / "m")
    model = register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"], activate=True)
    return store, model, msd_dir


def test_import_status_agreement_queue_and_approve(env):
    store, model, msd = env
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No cases yet" in i.value for i in at.info)
    at.button(key="import_folder").click().run()
    assert not at.exception, at.exception
    table = _table(at, "Status")
    assert len(table) == 220  # every case of the folder, registered by path
    assert set(table["Status"]) == {"new"}
    assert all(Path(s.image_path).is_relative_to(msd.resolve()) for s in store.scans())  # nothing copied

    # a prediction for three scans (different uncertainty) and a correction of one of them
    scans = {s.name: s for s in store.scans()}
    for name, unc in (("hippocampus_001", 0.10), ("hippocampus_003", 0.40), ("hippocampus_007", 0.25)):
        store.record_prediction(scans[name].id, model.id, mean_uncertainty=unc, foreground_voxels=500)
    ref = load_scan(msd / "imagesTr" / "hippocampus_007.nii.gz")
    truth = load_label(msd / "labelsTr" / "hippocampus_007.nii.gz", reference=ref).array
    pred = truth.copy()
    pred[truth == 2] = 0  # the "model" missed the posterior part
    mv = save_label_version(store, scans["hippocampus_007"].id, pred, ref, "model", author="", model_id=model.id)
    save_label_version(store, scans["hippocampus_007"].id, truth, ref, "correction", author="ann",
                       parent_version_id=mv.id)
    at.run()
    table = _table(at, "Status").set_index("Case")
    assert table.loc["hippocampus_001", "Status"] == "predicted"
    assert table.loc["hippocampus_007", "Status"] == "corrected"
    assert table.loc["hippocampus_007", "Last touched by"] == "ann"
    assert table.loc["hippocampus_007", "Model agreement (Dice) anterior"] == 1.0
    assert table.loc["hippocampus_007", "Model agreement (Dice) posterior"] == 0.0
    assert table.loc["hippocampus_008", "Status"] == "new"

    queue = _table(at, "Rank")
    assert list(queue["Case"][:3]) == ["hippocampus_003", "hippocampus_007", "hippocampus_001"]  # least sure first
    at.selectbox(key="queue_strategy").set_value("random").run()
    random_order = list(_table(at, "Rank")["Case"])
    assert random_order[:3] != ["hippocampus_003", "hippocampus_007", "hippocampus_001"]
    assert sorted(random_order) == sorted(queue["Case"])
    at.selectbox(key="queue_strategy").set_value("foreground-random").run()
    assert sorted(_table(at, "Rank")["Case"]) == ["hippocampus_001", "hippocampus_003", "hippocampus_007"]

    # approve the corrected case
    at.text_input(key="author").set_value("bob").run()
    assert at.selectbox(key="approve_case").value == "hippocampus_007"
    at.button(key="approve_btn").click().run()
    assert not at.exception, at.exception
    latest = store.label_versions(scans["hippocampus_007"].id)[-1]
    assert (latest.kind, latest.author) == ("approved", "bob")
    table = _table(at, "Status").set_index("Case")
    assert table.loc["hippocampus_007", "Status"] == "approved"
    assert "hippocampus_007" not in list(_table(at, "Rank")["Case"])  # approved cases leave the queue
