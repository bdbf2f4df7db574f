"""The app's state of the current scan, read from an AppTest run (`components.scan_state.ScanState`)."""

from __future__ import annotations


def current_state(at):
    """The `ScanState` of the session's current scan (keyed by its content id)."""
    return at.session_state["scans"][at.session_state["current_scan"]]


def predictions(at) -> dict:
    """The current scan's predictions made in this session, by model digest and path."""
    return current_state(at).predictions
