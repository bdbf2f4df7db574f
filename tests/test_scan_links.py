"""Names people can tell apart and links that mean one scan (`segloop.store.scan_links`, the workspace's names)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segloop.io.volume import content_id, volume_from_array
from segloop.store.database import MIGRATIONS, Datastore
from segloop.store.label_versions import list_versions, save_label_version
from segloop.store.predictions import ensure_scan
from segloop.store.scan_links import ScanChoice, matches, resolve_link, short_id, unique_name

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12)


@given(st.lists(names, max_size=12))
def test_unique_name_never_takes_a_name_in_use(wanted: list[str]) -> None:
    taken: set[str] = set()
    for w in wanted:
        got = unique_name(w, taken)
        assert got not in taken and got.strip() == got and got
        if w.strip() and w.strip() not in taken:
            assert got == w.strip()  # a free name is kept as it is
        taken.add(got)


def _vol(seed: int, name: str = "T1w"):
    arr = np.random.default_rng(seed).random((6, 7, 8)).astype(np.float32)
    return volume_from_array(arr, np.diag([1.0, 1.0, 1.0, 1.0]), name=name)


def test_new_scans_with_one_name_get_names_people_can_tell_apart(tmp_path: Path) -> None:
    store = Datastore(workspace=tmp_path / "ws")
    a, b, c = (ensure_scan(store, "T1w", _vol(i), "upload") for i in range(3))
    assert [a.name, b.name, c.name] == ["T1w", "T1w (2)", "T1w (3)"]
    assert ensure_scan(store, "other name", _vol(1), "upload").name == "T1w (2)"  # same voxels: same scan, same name
    assert len(store.scans()) == 3 and store.scan_names() == {"T1w", "T1w (2)", "T1w (3)"}


def test_a_short_id_finds_exactly_its_scan(tmp_path: Path) -> None:
    store = Datastore(workspace=tmp_path / "ws")
    scans = [ensure_scan(store, "T1w", _vol(i), "upload") for i in range(3)]
    for s in scans:
        assert [x.id for x in store.scans_with_id_prefix(short_id(s.sha256))] == [s.id]
    assert store.scans_with_id_prefix("abc") == [] and store.scans_with_id_prefix("zzzz") == []


def test_a_workspace_with_namesakes_upgrades_to_unique_names_and_keeps_every_version(tmp_path: Path) -> None:
    """Schema 3 allowed three scans called T1w (the bug of issue 21): after the upgrade each has its own name."""
    ws = tmp_path / "ws"
    ws.mkdir()
    conn = sqlite3.connect(ws / "segloop.db", isolation_level=None)
    for step in MIGRATIONS[:3]:
        conn.executescript(step)
    conn.execute("PRAGMA user_version = 3")
    vols = [_vol(i) for i in range(4)]
    for i, (name, vol) in enumerate(zip(["T1w", "T1w", "T1w (2)", "T1w"], vols)):
        conn.execute("INSERT INTO scans (name, image_path, source, sha256, created_at) VALUES (?, ?, 'uploaded', ?, ?)",
                     (name, f"/nowhere/{i}.nii.gz", content_id(vol), time.time() + i))
    conn.close()

    store = Datastore(workspace=ws)
    assert [s.name for s in sorted(store.scans(), key=lambda s: s.id)] == ["T1w", "T1w (3)", "T1w (2)", "T1w (4)"]
    # the names stay unique from now on, enforced by the database itself
    try:
        with store.write() as tx:
            tx.conn.execute("UPDATE scans SET name = 'T1w' WHERE id = 2")
        raise AssertionError("the database accepted a second scan called T1w")
    except sqlite3.IntegrityError:
        pass
    v = save_label_version(store, 2, np.ones((6, 7, 8), np.uint8), vols[1], "correction", author="ann")
    assert [x.id for x in list_versions(store, 2)] == [v.id]


def _choice(name: str, seed: int | None, origin: str = "workspace", path: str | None = None) -> ScanChoice:
    cid = None if seed is None else content_id(_vol(seed))
    return ScanChoice(name, cid, path or f"/ws/{name}.nii.gz", origin)


def test_links_resolve_to_one_scan_or_say_why() -> None:
    a, b = _choice("T1w", 0), _choice("T1w (2)", 1)
    folder = [_choice("hippocampus_001", None, "folder", "/data/h1.nii.gz")]
    assert resolve_link("T1w", b.short_id, folder, [a, b]).choice == b  # the id decides, not the name
    assert resolve_link("renamed", a.short_id, folder, [a, b]).choice == a  # a rename moves nothing
    got = resolve_link("hippocampus_001", "0123456789ab", folder, [a, b])
    assert got.choice == folder[0] and got.needs_check  # checked once its voxels are read
    assert resolve_link("hippocampus_001", None, folder, [a, b]).choice == folder[0]
    # a folder case and its own workspace row are one scan, not two namesakes
    row = ScanChoice("hippocampus_001", "cd" * 32, "/data/h1.nii.gz", "workspace")
    assert resolve_link("hippocampus_001", None, folder, [row]).choice == folder[0]
    missing = resolve_link("T1w", "ffffffffffff", folder, [a, b])
    assert missing.choice is None and "ffffffffffff" in missing.problem and "other voxels" in missing.problem
    assert resolve_link("T1w", "not hex!", folder, [a]).choice is None
    assert "no case named" in resolve_link("nobody", None, folder, [a]).problem


def test_an_old_name_link_that_several_scans_share_lists_them() -> None:
    a, b = _choice("T1w", 0), ScanChoice("T1w", content_id(_vol(1)), "/ws/other.nii.gz", "workspace")
    got = resolve_link("T1w", None, [], [a, b])
    assert got.choice is None and got.candidates == (a, b) and "2 scans" in got.problem


@given(st.integers(0, 2**32 - 1))
def test_matches_is_the_prefix_rule(seed: int) -> None:
    cid = content_id(_vol(seed % 50))
    assert matches(cid, None) and matches(cid, short_id(cid)) and matches(cid, short_id(cid).upper())
    other = "f" if cid[0] != "f" else "0"
    assert not matches(cid, other + short_id(cid)[1:])


def test_a_rename_moves_nothing_and_names_stay_unique(tmp_path: Path) -> None:
    from segloop.errors import SegLoopError
    from segloop.training.finetune import resolve_scans

    store = Datastore(workspace=tmp_path / "ws")
    a, b = (ensure_scan(store, "T1w", _vol(i), "upload") for i in range(2))
    v = save_label_version(store, a.id, np.ones((6, 7, 8), np.uint8), _vol(0), "correction", author="ann")
    with store.write() as tx:
        tx.rename_scan(a.id, "sub-01 T1w")
    renamed = store.scan(a.id)
    assert renamed.name == "sub-01 T1w" and renamed.sha256 == a.sha256
    assert [x.id for x in list_versions(store, a.id)] == [v.id]
    assert resolve_link("T1w", short_id(a.sha256), [], [ScanChoice(renamed.name, renamed.sha256, renamed.image_path,
                                                                   "workspace")]).choice.name == "sub-01 T1w"
    for bad in ("T1w (2)", "  "):  # another scan's name, or none
        try:
            with store.write() as tx:
                tx.rename_scan(a.id, bad)
            raise AssertionError(f"renamed to {bad!r}")
        except SegLoopError:
            pass
    assert store.scan(a.id).name == "sub-01 T1w" and store.scan(b.id).name == "T1w (2)"
    # what a researcher types: an id, a name or the short id an app link carries
    assert resolve_scans(store, [a.id, "T1w (2)", short_id(a.sha256)]) == [a.id, b.id, a.id]


def test_workspace_command_line_lists_and_renames_scans(tmp_path: Path, msd_dir: Path, capsys) -> None:
    import json

    from segloop.cli import main as cli_main

    ws = tmp_path / "ws"
    image = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    assert cli_main(["workspace", "add-scan", str(image), "--workspace", str(ws), "--json"]) == 0
    (added,) = json.loads(capsys.readouterr().out)
    assert cli_main(["workspace", "scans", "--workspace", str(ws), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["name"], row["scan"]) == (added["id"], "hippocampus_001", added["content_id"][:12])
    assert cli_main(["workspace", "rename", str(row["id"]), "sub-01/T1w", "--workspace", str(ws)]) == 0
    assert "now called 'sub-01/T1w'" in capsys.readouterr().out
    assert Datastore(workspace=ws).scan(row["id"]).name == "sub-01/T1w"
