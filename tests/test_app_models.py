"""The Models page through AppTest: the shipped model is v1 and active; activate v2; roll back."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apptest_tables import table as _table  # noqa: E402

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.model.card import Evaluation, Metrics, load_card  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.registry import SHIPPED_STEM, register_model  # noqa: E402

PAGE = str(ROOT / "pages" / "models.py")


SHIPPED = WEIGHTS_DIR / f"{SHIPPED_STEM}.onnx"


def test_shipped_v1_active_then_activate_v2_and_roll_back(tmp_path, monkeypatch, msd_dir):
    ws = tmp_path / "ws"
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    table = _table(at, "Version")
    assert list(table["Version"]) == [1]
    assert table["Active"][0].endswith("active") and table["Parent"][0] == "—"
    assert "active now: v1" in " ".join(c.value for c in at.caption).lower()

    store = Datastore(workspace=ws)
    v1 = store.model_by_version(1)
    card = load_card(WEIGHTS_DIR / f"{SHIPPED_STEM}.card.json")
    card.metrics = Metrics(validation=Evaluation(cases=["hippocampus_001"], dice={"anterior": 0.5, "posterior": 0.6},
                                                 protocol="a test set"))
    card.save(tmp_path / "v2.card.json")
    register_model(store, SHIPPED, tmp_path / "v2.card.json", parent_id=v1.id, note="copy for the test")
    at.run()
    table = _table(at, "Version")
    assert list(table["Version"]) == [1, 2] and table["Parent"][1] == "v1"
    assert table["Active"][1] == ""  # registering never activates
    assert list(table["Dice anterior"])[1] == 0.5 and list(table["Dice posterior"])[1] == 0.6
    assert len(at.get("plotly_chart")) == 1  # grouped Dice bars

    at.selectbox(key="activate_version").set_value(2).run()
    at.button(key="activate_btn").click().run()
    assert not at.exception, at.exception
    assert store.active_model().version == 2
    assert any("v2 is now the active model" in s.value for s in at.success)
    table = _table(at, "Version")
    assert table["Active"][1].endswith("active") and table["Active"][0] == ""
    hist = _table(at, "Action")
    assert list(hist["Model"]) == ["v2", "v1"] and list(hist["Action"]) == ["activate", "activate"]

    at.button(key="rollback_btn").click().run()
    assert not at.exception, at.exception
    assert store.active_model().version == 1
    assert any("Rolled back: v1" in s.value for s in at.success)
    hist = _table(at, "Action")
    assert list(hist["Action"])[0] == "rollback" and list(hist["Model"])[0] == "v1"
    # each model's ONNX file and card can be downloaded
    keys = {b.key for b in at.get("download_button")}
    assert {"dl_onnx_1", "dl_card_1", "dl_onnx_2", "dl_card_2"} <= keys
