"""Pick the current scan: a case of SEGLOOP_DATA_DIR, a built-in demo scan, or an upload.

Deep links: `?case=<name>` opens a case directly. A scan that cannot be read shows its ScanError
message and leaves the current scan as it was.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from components import session
from segloop import config
from segloop.errors import SegLoopError

UPLOAD_TYPES = ["nii", "gz", "zip", "nrrd", "mha", "mhd"]
DEFAULT_DEMO = "mni152_t1"
MAX_UPLOAD_MB = 500


@st.cache_resource(show_spinner="Loading scan…", max_entries=8)
def _load_case_cached(image_path: str, label_path: str | None, _key: str):
    """(Volume, labels or None), loaded once per file version (the key holds path+mtime+size)."""
    from segloop.io.readers import load_label, load_scan

    vol = load_scan(image_path)
    labels = load_label(label_path, reference=vol).array if label_path else None
    vol.array.setflags(write=False)  # shared between sessions: never edited in place
    return vol, labels


def load_source_case(case) -> tuple:
    """Load a data_sources.SourceCase (cached by path + mtime)."""
    key = session.file_key(case.image_path) + "||" + session.file_key(case.label_path)
    return _load_case_cached(case.image_path, case.label_path, key)


@st.cache_data(show_spinner=False, ttl=30)
def _list_cases(folder: str) -> list:
    from segloop.data.folders import list_cases

    return list_cases(folder)


def available_cases() -> tuple[list, str]:
    """(cases, source description): SEGLOOP_DATA_DIR's cases, else the demo scans."""
    folder = config.data_dir()
    if folder is not None:
        return _list_cases(str(folder)), f"data folder {folder}"
    from segloop.data.demo import demo_cases

    return demo_cases(), "built-in demo scans"


def open_case(case, source: str) -> bool:
    """Make a SourceCase current; shows st.error and returns False when it cannot be read."""
    try:
        vol, labels = load_source_case(case)
    except SegLoopError as exc:
        st.error(str(exc))
        return False
    session.set_current(vol, labels, case.name, source)
    return True


def apply_upload(name: str, data: bytes, max_mb: int = MAX_UPLOAD_MB) -> bool:
    """Load uploaded bytes as the current scan; shows st.error and changes nothing when it fails."""
    from segloop.io.readers import load_scan_bytes

    if len(data) > max_mb * 1024 * 1024:
        st.error(f"{name}: {len(data) / 1e6:.0f} MB is over the upload limit of {max_mb} MB")
        return False
    try:
        vol = load_scan_bytes(name, data)
    except SegLoopError as exc:
        st.error(str(exc))
        return False
    session.set_current(vol, None, vol.name or name, "upload")
    return True


def scan_picker() -> None:
    """Case select box + uploader; keeps `?case=` in the URL in step with the current scan."""
    try:
        cases, source = available_cases()
    except SegLoopError as exc:
        st.error(str(exc))
        return
    st.session_state["data_source"] = source
    by_name = {c.name: c for c in cases}
    names = list(by_name)
    wanted = st.query_params.get("case")
    if "case_select" not in st.session_state and names:
        if wanted and wanted in by_name:
            st.session_state["case_select"] = wanted
        else:
            if wanted and session.current_source() != "upload":
                st.error(f"no case named {wanted!r} in the {source}")
            st.session_state["case_select"] = DEFAULT_DEMO if DEFAULT_DEMO in by_name else names[0]

    col_pick, col_up = st.columns([2, 3])
    with col_pick:
        choice = st.selectbox("Scan", names, key="case_select", help=source) if names else None
    with col_up:
        upload = st.file_uploader(
            "…or upload a scan (.nii, .nii.gz, .nrrd, .mha, DICOM .zip)",
            type=UPLOAD_TYPES,
            key="scan_upload",
        )
    if not names:
        st.info(f"No scans found in the {source}.")
    if upload is not None and st.session_state.get("_upload_id") != upload.file_id:
        st.session_state["_upload_id"] = upload.file_id
        apply_upload(upload.name, upload.getvalue())
    elif choice is not None and (
        session.current_case() != choice and (session.current_source() != "upload" or st.session_state.get("_last_choice") != choice)
    ):
        open_case(by_name[choice], "demo" if "demo" in source else "data folder")
    st.session_state["_last_choice"] = choice
    if session.current_case() and session.current_source() != "upload":
        if st.query_params.get("case") != session.current_case():
            st.query_params["case"] = session.current_case()


def describe(volume) -> str:
    """Compact caption: shape, spacing, orientation, intensity range."""
    sp = ", ".join(f"{s:.3g}" for s in volume.spacing)
    arr = volume.array
    return (
        f"{volume.name} · shape {' × '.join(str(s) for s in volume.shape)} · spacing {sp} mm · "
        f"file orientation {volume.source_orientation} (shown in RAS) · intensity {float(np.min(arr)):.4g}…{float(np.max(arr)):.4g}"
    )
