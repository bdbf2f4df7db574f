"""What a page's volume view was given to show, read from an AppTest run (the browser side is in tests/e2e)."""

from __future__ import annotations

import json


def view_data(at, key: str) -> dict:
    """The JSON payload of the volume view mounted with `key` (slices, labels digest, outlines...)."""
    for element in at.get("bidi_component"):
        proto = element.proto
        if proto.component_name == "segloop_volume_view" and key in proto.id:
            return json.loads(proto.json)
    raise KeyError(f"no volume view {key!r} on the page")
