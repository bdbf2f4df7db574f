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
    assert table["Validated on"][1] == "a test set · 1 case"
    assert "Dice anterior" not in table.columns  # figures of different evaluations are never side by side
    # v1 and v2 were scored on different cases: one evaluation at a time, each with its own version
    evals = at.selectbox(key="models_evaluation")
    assert len(evals.options) == 2
    assert evals.options[0] == "a test set · 1 case — v2"  # ties: the newest version's evaluation first
    assert evals.options[1].startswith("validation split of the training run") and "44 cases" in evals.options[1]
    scores = _table(at, "Mean Dice")
    assert list(scores["Version"]) == ["v2"]
    assert list(scores["Dice anterior"]) == [0.5] and list(scores["Dice posterior"]) == [0.6]
    assert any("No figures on this evaluation for v1" in c.value for c in at.caption)
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


def _bars(at: AppTest) -> list[str]:
    """Names of the bar series of the Dice chart (one per version)."""
    import json

    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [trace["name"] for trace in fig["data"]]


def test_versions_are_compared_only_on_the_same_evaluation(tmp_path, monkeypatch, msd_dir):
    ws = tmp_path / "ws"
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    store = Datastore(workspace=ws)
    v1 = store.model_by_version(1)
    base = load_card(WEIGHTS_DIR / f"{SHIPPED_STEM}.card.json")

    def register(metrics: Metrics, parent_id: int, name: str):
        base.metrics = metrics
        base.save(tmp_path / f"{name}.card.json")
        return register_model(store, SHIPPED, tmp_path / f"{name}.card.json", parent_id=parent_id, note=name)

    run3 = dict(cases=["hippocampus_001", "hippocampus_003"], protocol="fixed validation set of fine-tuning run #3",
                evaluated_with="PyTorch, whole volumes")
    v2 = register(Metrics(validation=Evaluation(dice={"anterior": 0.82, "posterior": 0.8}, **run3),
                          parent_validation=Evaluation(dice={"anterior": 0.78, "posterior": 0.77}, **run3)),
                  v1.id, "v2")
    # v3: fine-tuned from v2 on another run: its cases differ, so it is never set beside run #3's figures
    run4 = dict(cases=["hippocampus_007"], protocol="fixed validation set of fine-tuning run #4",
                evaluated_with="PyTorch, whole volumes")
    register(Metrics(validation=Evaluation(dice={"anterior": 0.9, "posterior": 0.88}, **run4),
                     parent_validation=Evaluation(dice={"anterior": 0.85, "posterior": 0.84}, **run4)), v2.id, "v3")
    at.run()
    assert not at.exception, at.exception

    evals = at.selectbox(key="models_evaluation")
    # most versions first, newest first among equals; each names its protocol, case count and versions
    assert list(evals.options) == [
        "fixed validation set of fine-tuning run #4 · 1 case · PyTorch — v2, v3",
        "fixed validation set of fine-tuning run #3 · 2 cases · PyTorch — v1, v2",
        "validation split of the training run (it also chose the epoch) · 44 cases · ONNX Runtime — v1"]
    assert "segloop" not in " ".join(evals.options)  # no internal module names
    scores = _table(at, "Mean Dice")
    assert list(scores["Version"]) == ["v2", "v3"]
    assert list(scores["Dice anterior"]) == [0.85, 0.9]  # v2's figures from v3's card, on v3's cases
    assert list(scores["Figures from"]) == ["the card of v3", "its own card"]
    assert _bars(at) == ["v2", "v3"]
    assert any("Shown: **fixed validation set of fine-tuning run #4" in c.value and
               "No figures on this evaluation for v1" in c.value for c in at.caption)

    evals.set_value(evals.value).run()  # stays put across reruns
    at.selectbox(key="models_evaluation").select_index(1).run()
    assert not at.exception, at.exception
    scores = _table(at, "Mean Dice")
    assert list(scores["Version"]) == ["v1 (active)", "v2"]
    assert list(scores["Dice anterior"]) == [0.78, 0.82]
    assert _bars(at) == ["v1 (active)", "v2"]
    assert any("No figures on this evaluation for v3" in c.value for c in at.caption)

    at.selectbox(key="models_evaluation").select_index(2).run()
    scores = _table(at, "Mean Dice")
    assert list(scores["Version"]) == ["v1 (active)"]  # the shipped model alone: its split chose its epoch
    assert any("No figures on this evaluation for v2, v3" in c.value for c in at.caption)
