"""Scan identity in the app under random use: a Hypothesis state machine drives one Segment page (AppTest).

`test_app_scan_identity.py` checks the sequences someone thought of; this one lets Hypothesis pick them.
One browser session (a fresh AppTest on a fresh workspace per example) opens a data folder case, then
uploads volumes from a pool of three contents of the same shape (a crop, the crop mirrored, the crop
plus a constant) under file names that collide ("T1w.nii.gz", "b/T1w.nii.gz") or not ("scan.nii.gz"),
the same voxels under other names too, switches between the scans in the Scan box, runs the model,
grows or shrinks a label, undoes and saves, in any order.

A plain model says what the page must show: per content id, the labels on screen (none, the model's
output, a saved version, with the edits and undos mirrored by `segloop.editing.operations`), the
undo history, the prediction and every version saved, with the version it descends from. After every
step the session, the page and the workspace must agree with it: the current scan is the volume on
screen, its labels are its own, names are unique and stick to their voxels, every saved version
belongs to the scan it was saved on and holds what that scan showed, and every prediction in a
scan's state was made from that scan's voxels.

At most 3 uploaded contents plus the starting case: the session keeps the unsaved edits of 3 other scans
and the predictions of 4, so nothing the model expects is ever dropped (that bound has its own tests).
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages import `components` from the repository root
    sys.path.insert(0, str(ROOT))

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.editing import operations  # noqa: E402
from segloop.io.readers import load_scan_bytes  # noqa: E402
from segloop.io.volume import Volume, content_id  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import list_versions, load_version  # noqa: E402

SEGMENT = str(ROOT / "pages" / "segment.py")
START_CASE = "hippocampus_003"  # the data folder case the session opens on (not in the upload pool)
#: Upload file names and the display name each asks for: two ask for "T1w", folders are dropped.
FILE_NAMES = {"T1w.nii.gz": "T1w", "b/T1w.nii.gz": "T1w", "scan.nii.gz": "scan"}
LABELS = (1, 2)  # the shipped model's anterior and posterior
AUTHOR = "ann"

#: Affordable on a 2-core CI machine (~0.1 s a page run, ~1 s a fresh session): the same examples on every run
#: (derandomized, no example database); no "explain" phase, whose coverage tracing makes a failure take minutes.
SETTINGS = settings(max_examples=15, stateful_step_count=12, deadline=None, database=None, derandomize=True,
                    print_blob=False, report_multiple_bugs=False, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


# --------------------------------------------------------------------------- the pool and the oracle


def upload_pool(msd_dir: Path) -> list[bytes]:
    """Three .nii.gz contents of one shape and affine: hippocampus_001, it mirrored along x, it plus 100."""
    img = nib.load(str(msd_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    arr = np.asarray(img.dataobj, dtype=np.float32)
    arrays = (arr, np.ascontiguousarray(arr[::-1]), arr + 100.0)
    return [gzip.compress(nib.Nifti1Image(a, img.affine).to_bytes()) for a in arrays]


_PREDICTIONS: dict[str, np.ndarray] = {}  # content id -> the shipped model's labels, computed here once


def expected_prediction(volume: Volume) -> np.ndarray:
    """What the shipped model makes of these voxels, run outside the app (the page runs the same model)."""
    key = content_id(volume)
    if key not in _PREDICTIONS:
        from segloop.model.inference import default_model_path
        from segloop.wholehead.segment import segment_scan

        _PREDICTIONS[key] = np.asarray(segment_scan(volume, default_model_path(), "auto").labels)
    return _PREDICTIONS[key]


def same_labels(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Equal label maps; None (no labels yet) equals an all-background map."""
    if a is None or b is None:
        other = b if a is None else a
        return other is None or not np.any(other)
    return a.shape == b.shape and np.array_equal(a, b)


def differing(labels: np.ndarray | None, base: np.ndarray | None) -> int:
    """Unsaved voxels as the editor counts them (`components.scan_state.differing_voxels`)."""
    if labels is None:
        return 0
    if base is None:
        return int(np.count_nonzero(labels))
    return int(np.count_nonzero(labels != base))


def numbered(wanted: str, taken: set[str]) -> str:
    """The name an upload asking for `wanted` must get: it, else "wanted (n)" with the smallest free n >= 2."""
    if wanted not in taken:
        return wanted
    return next(f"{wanted} ({n})" for n in itertools.count(2) if f"{wanted} ({n})" not in taken)


@dataclass
class Saved:
    """A version the model expects in the workspace: its kind, its labels and the version it descends from."""

    kind: str  # "model" or "correction"
    labels: np.ndarray
    parent: int | None  # index in the scan's `saves`, None for none


@dataclass
class Expected:
    """What one scan (one content id) must look like."""

    key: str
    name: str
    volume: Volume
    reference: np.ndarray | None = None  # the labels a data folder case comes with
    labels: np.ndarray | None = None  # on screen when current (kept aside otherwise)
    base: np.ndarray | None = None  # what "unsaved" is measured against
    base_version: int | None = None  # index in `saves` of the version the labels descend from
    undo: list[np.ndarray] = field(default_factory=list)  # labels before each undoable edit
    prediction: np.ndarray | None = None  # the model's output, once run in this session
    saves: list[Saved] = field(default_factory=list)

    def __repr__(self) -> str:  # failures name the scan, not its arrays
        return f"Expected({self.name!r}, {self.key[:12]}, {len(self.saves)} saved)"

    @property
    def unsaved(self) -> bool:
        return differing(self.labels, self.base) > 0

    def opened(self) -> None:
        """The scan became current: its kept unsaved edits (with their undo history) if any, else its default
        saved version (latest correction, else latest model output), else the labels it came with."""
        if self.unsaved:
            return
        corrections = [i for i, s in enumerate(self.saves) if s.kind == "correction"]
        models = [i for i, s in enumerate(self.saves) if s.kind == "model"]
        pick = corrections[-1] if corrections else models[-1] if models else None
        shown = self.reference if pick is None else self.saves[pick].labels
        self.labels = None if shown is None else shown.copy()
        self.base = None if shown is None else shown.copy()
        self.base_version = pick
        self.undo = []

    def editable(self) -> np.ndarray:
        """The labels an edit or a save works on (an empty map for a scan without labels yet)."""
        return np.zeros(self.volume.shape, np.uint8) if self.labels is None else self.labels.copy()


# --------------------------------------------------------------------------- the machine


class ScanIdentityMachine(RuleBasedStateMachine):
    """One Segment page session against the model above. Configured by the test (`pool`, `new_workspace`)."""

    pool: list[bytes] = []  # the upload contents (`upload_pool`)
    folder_names: set[str] = set()  # the data folder's case names (an upload's name must differ from them too)
    new_workspace = None  # () -> Path: an empty folder

    def __init__(self) -> None:
        super().__init__()
        self.ws = self.new_workspace()
        os.environ["SEGLOOP_WORKSPACE"] = str(self.ws)  # the test's monkeypatch puts the old value back
        self.at = AppTest.from_file(SEGMENT, default_timeout=180)
        self.at.query_params["case"] = START_CASE
        self.at.run()
        self._ok()
        self.at.text_input(key="seg_author").input(AUTHOR).run()
        self._ok()
        vol = self.at.session_state["current_volume"]
        labels = self.at.session_state["current_labels"]
        key = content_id(vol)
        assert labels is not None and labels.any(), "the data folder case opens on its reference labels"
        start = Expected(key, START_CASE, vol, reference=np.array(labels, copy=True))
        start.opened()
        self.scans: dict[str, Expected] = {key: start}
        self.current = key

    def teardown(self) -> None:
        shutil.rmtree(self.ws, ignore_errors=True)  # ~20 MB each (the registry copies the model), many when shrinking

    # ----------------------------------------------------------------- helpers

    def _ok(self) -> None:
        assert not self.at.exception, self.at.exception

    def _cur(self) -> Expected:
        return self.scans[self.current]

    def _state(self):
        return self.at.session_state["scans"][self.at.session_state["current_scan"]]

    def _store(self) -> Datastore:
        return Datastore(workspace=self.ws)

    # ----------------------------------------------------------------- rules

    @initialize(content=st.integers(0, 2), file_name=st.sampled_from(sorted(FILE_NAMES)), segment=st.booleans())
    def first_upload(self, content: int, file_name: str, segment: bool) -> None:
        """Every example uploads at least once (the data folder case alone tells nothing about identity), and
        often segments it: labels to edit from the start, and a prediction that must stay this scan's."""
        self.upload(content, file_name)
        if segment:
            self.run_model()

    @rule(content=st.integers(0, 2), file_name=st.sampled_from(sorted(FILE_NAMES)))
    def upload(self, content: int, file_name: str) -> None:
        """Upload pool content `content` as `file_name`: known voxels are the scan they were, under its name."""
        data = self.pool[content]
        vol = load_scan_bytes(file_name, data)
        key = content_id(vol)
        if key not in self.scans:  # new voxels: a name no scan of the workspace or the data folder has
            taken = {s.name for s in self._store().scans()} | self.folder_names
            self.scans[key] = Expected(key, numbered(FILE_NAMES[file_name], taken), vol)
        self.at.session_state["_pending_upload"] = (file_name, data)  # what the uploader's callback leaves
        self.at.run()
        self._ok()
        assert self.at.session_state["current_case"] == self.scans[key].name, (
            f"{file_name} (content {content}) was given the name {self.at.session_state['current_case']!r}")
        self.current = key
        self.scans[key].opened()

    @precondition(lambda self: len(self.scans) > 1)
    @rule(data=st.data())
    def switch(self, data) -> None:
        """Pick another scan of the session in the Scan box, by the name the app gave it."""
        name = data.draw(st.sampled_from(sorted(s.name for k, s in self.scans.items() if k != self.current)),
                         label="scan")
        key = next(k for k, s in self.scans.items() if s.name == name)
        self.at.selectbox(key="case_select").set_value(name).run()
        self._ok()
        self.current = key
        self.scans[key].opened()

    @precondition(lambda self: self._cur().prediction is None)
    @rule()
    def run_model(self) -> None:
        """Run the model (its button shows while the scan has no prediction); the output must be of its voxels."""
        self.at.button(key="seg_run").click().run()
        self._ok()
        scan = self._cur()
        preds = list(self._state().predictions.values())
        assert len(preds) == 1, f"{scan.name} holds {len(preds)} predictions after its Run button"
        pred = preds[0]
        np.testing.assert_array_equal(pred.labels, expected_prediction(scan.volume),
                                      err_msg=f"the prediction kept for {scan.name} is not of its voxels")
        store = self._store()
        assert pred.version_id is not None, pred.warnings
        version = store.label_version(pred.version_id)
        assert version.kind == "model" and store.scan(version.scan_id).sha256 == scan.key, (
            f"the model version of {scan.name} was saved on scan {store.scan(version.scan_id).name}")
        scan.prediction = np.array(pred.labels, copy=True)
        scan.saves.append(Saved("model", scan.prediction.copy(), None))
        scan.labels, scan.base = scan.prediction.copy(), scan.prediction.copy()
        scan.base_version, scan.undo = len(scan.saves) - 1, []

    @precondition(lambda self: self._cur().labels is not None and self._cur().labels.any())
    @rule(op=st.sampled_from(["grow", "shrink"]), value=st.sampled_from(LABELS))
    def edit(self, op: str, value: int) -> None:
        """Grow or shrink a label by one voxel (on a scan with labels: on none, both change nothing)."""
        radio = self.at.radio(key="seg_label")
        if radio.value != value:
            radio.set_value(value).run()  # the buttons act on the label shown when they were drawn
            self._ok()
        scan = self._cur()
        before = scan.editable()
        after = before.copy()
        getattr(operations, op)(after, value, 1)
        self.at.button(key=f"seg_{op}").click().run()
        self._ok()
        if not np.array_equal(after, before):  # an edit that changes nothing is not undoable
            scan.undo.append(before)
        scan.labels = after

    @precondition(lambda self: bool(self._cur().undo))
    @rule()
    def undo(self) -> None:
        button = self.at.button(key="seg_undo")
        assert not button.disabled
        button.click().run()
        self._ok()
        scan = self._cur()
        scan.labels = scan.undo.pop()

    @precondition(lambda self: not self._cur().saves or self._cur().saves[-1].kind != "correction"
                  or not same_labels(self._cur().labels, self._cur().saves[-1].labels))
    @rule()
    def save(self) -> None:
        """Save a correction (not twice in a row the same labels: that adds steps, not cases)."""
        if self.at.text_input(key="seg_author").value != AUTHOR:
            self.at.text_input(key="seg_author").input(AUTHOR).run()
            self._ok()
        self.at.button(key="seg_save").click().run()
        self._ok()
        scan = self._cur()
        labels = scan.editable()
        scan.saves.append(Saved("correction", labels.copy(), scan.base_version))
        scan.labels, scan.base, scan.base_version = labels, labels.copy(), len(scan.saves) - 1

    # ----------------------------------------------------------------- invariants

    @invariant()
    def agrees_with_the_model(self) -> None:
        at, ss = self.at, self.at.session_state
        self._ok()
        # the current scan is the volume on screen, under its one name
        key = ss["current_scan"]
        assert key == content_id(ss["current_volume"]), "the current scan's key is not the volume on screen"
        assert key == self.current, f"{ss['current_case']!r} is current, {self._cur().name!r} was opened"
        scan = self._cur()
        assert ss["current_case"] == scan.name
        # its labels, its prediction, its undo history
        on_screen = ss["current_labels"]
        shown_right = same_labels(on_screen, scan.labels)
        assert shown_right, (
            f"labels on screen for {scan.name}: {differing(on_screen, scan.labels)} voxels differ from the expected "
            f"({0 if on_screen is None else int(np.count_nonzero(on_screen))} vs "
            f"{0 if scan.labels is None else int(np.count_nonzero(scan.labels))} labelled)")
        run_shown = "seg_run" in [b.key for b in at.button]
        assert run_shown == (scan.prediction is None), (
            f"{scan.name}: Run button {'shown' if run_shown else 'missing'}, model "
            f"{'not run' if scan.prediction is None else 'run'} on it in this session")
        undo_off = at.button(key="seg_undo").disabled
        assert undo_off == (not scan.undo), f"{scan.name}: Undo {'disabled' if undo_off else 'enabled'}, " \
                                            f"{len(scan.undo)} edits to undo expected"
        # every scan's state in the session is its own: name, and predictions made from its voxels
        store = self._store()
        for k, state in ss["scans"].items():
            assert k in self.scans, f"the session holds a state for an unknown scan {state.name!r}"
            assert state.key == k and state.name == self.scans[k].name
            assert len(state.predictions) == (self.scans[k].prediction is not None)
            for pred in state.predictions.values():
                np.testing.assert_array_equal(pred.labels, self.scans[k].prediction,
                                              err_msg=f"the prediction kept for {state.name} is not its own")
                assert store.scan(store.label_version(pred.version_id).scan_id).sha256 == k
        # the workspace: one scan per content, unique names that stick, each version on its own scan
        records = store.scans()
        names = [r.name for r in records]
        assert len(names) == len(set(names)), f"display names shared in the workspace: {sorted(names)}"
        assert {r.sha256: r.name for r in records} == {k: s.name for k, s in self.scans.items()}
        for rec in records:
            expected = self.scans[rec.sha256]
            versions = list_versions(store, rec.id)
            assert [v.kind for v in versions] == [s.kind for s in expected.saves], (
                f"versions of {rec.name}: {[v.kind for v in versions]}, expected {[s.kind for s in expected.saves]}")
            for v, saved in zip(versions, expected.saves):
                assert v.scan_id == rec.id
                got = load_version(store, v.id, expected.volume)
                holds = got.shape == saved.labels.shape and np.array_equal(got, saved.labels)
                assert holds, (
                    f"{rec.name} v{v.version} ({v.kind}) holds labels it never had on screen "
                    f"({differing(got, saved.labels)} voxels differ)")
                parent = None if saved.parent is None else versions[saved.parent].id
                assert v.parent_version_id == parent, f"{rec.name} v{v.version} descends from the wrong version"


def test_scan_identity_holds_under_random_uploads_switches_edits_and_saves(
        msd_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model weights/hippocampus-unet-v1.onnx is missing")
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path_factory.mktemp("unused")))  # restored at the end

    class Machine(ScanIdentityMachine):
        pool = upload_pool(msd_dir)
        folder_names = {p.name[: -len(".nii.gz")] for p in (msd_dir / "imagesTr").glob("*.nii.gz")}

        @staticmethod
        def new_workspace() -> Path:
            return tmp_path_factory.mktemp("ws")

    run_state_machine_as_test(Machine, settings=SETTINGS)
