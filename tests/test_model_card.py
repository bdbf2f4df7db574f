"""Model cards: one typed schema, old cards read through the migration, a clear error for broken ones."""

from __future__ import annotations

import json

import pytest

from segloop.config import WEIGHTS_DIR
from segloop.errors import ModelError
from segloop.model.card import CARD_SCHEMA, card_from_dict, load_card, migrate_card_dict, training_data_summary
from segloop.store.registry import SHIPPED_STEM

SHIPPED_CARD = WEIGHTS_DIR / f"{SHIPPED_STEM}.card.json"


def test_shipped_card_reads_as_the_current_schema():
    raw = json.loads(SHIPPED_CARD.read_text())
    card = load_card(SHIPPED_CARD)
    assert card.schema == CARD_SCHEMA
    # processing moved out of `input`, with the same meaning
    old_tta = raw["input"].get("test_time_augmentation", raw.get("processing", {}).get("test_time_augmentation"))
    assert card.processing.test_time_augmentation == old_tta == ["flip_left_right"]
    assert card.processing.largest_component is True
    assert card.input.spacing == (1.0, 1.0, 1.0) and card.input.patch == (48, 64, 48)
    val = card.metrics.validation
    assert set(val.dice) == {"anterior", "posterior"} and 0.5 < val.mean_dice <= 1.0
    assert val.cases == card.split["validation"] and len(val.cases) == 44
    assert "chose" in val.protocol  # says that this split also selected the epoch
    assert training_data_summary(card).startswith("176 training cases")


def test_finetuned_schema1_card_metrics_keyed_by_value_become_names():
    old = {"name": "m", "version": 2, "task": "t", "parent": "m v1",
           "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "head"}, {"value": 2, "name": "tail"}],
           "input": {"channels": 1, "spacing": [1, 1, 1], "size_divisor": 16, "test_time_augmentation": [],
                     "postprocessing": {"largest_component": False}},
           "training": {"fine_tuned_from": "m v1", "train_cases": ["s1@v3", "s2@v1", "orig_1"]},
           "metrics": {"val_dice": {"1": 0.8, "2": 0.7}, "parent_val_dice": {"1": 0.6, "2": 0.5},
                       "validation_cases": ["a", "b"]}}
    card = card_from_dict(old)
    assert card.metrics.validation.dice == {"head": 0.8, "tail": 0.7}
    assert card.metrics.parent_validation.dice == {"head": 0.6, "tail": 0.5}
    assert card.metrics.validation.cases == ["a", "b"]
    assert card.training["corrected_cases"] == ["s1@v3", "s2@v1"] and card.training["original_cases"] == ["orig_1"]
    assert training_data_summary(card) == "2 corrected + 1 original cases, fine-tuned from m v1"
    assert migrate_card_dict(card.to_dict()) == card.to_dict()  # current cards pass through unchanged
    assert card_from_dict(json.loads(json.dumps(card.to_dict()))) == card  # round trip through JSON


def test_broken_card_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="incomplete or malformed"):
        card_from_dict({"name": "x", "version": 1, "task": "t"})
    bad = tmp_path / "m.card.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_card(bad)
