"""Sign-in identities and roles in the core: the role checks, who is recorded with each row, the append-only
audit trail, the roles configuration, and the start-up helper that turns environment variables into
Streamlit's [auth] settings."""

from __future__ import annotations

import csv
import io
import sqlite3
import stat
import sys
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.auth_setup import auth_settings, write_auth_secrets  # noqa: E402
from segloop.cli import main as cli_main  # noqa: E402
from segloop.errors import PermissionDenied, SegLoopError  # noqa: E402
from segloop.io.readers import load_scan  # noqa: E402
from segloop.store.database import MIGRATIONS, Datastore  # noqa: E402
from segloop.store.identity import (  # noqa: E402
    MIN_ROLE,
    SYSTEM,
    Action,
    Identity,
    audit_csv,
    audit_trail,
    load_roles_config,
    local_identity,
    permits,
    remove_role,
    require,
    role_of,
    set_role,
)
from segloop.store.label_versions import approve, save_label_version  # noqa: E402
from segloop.store.registry import activate, activation_history, register_model, rollback  # noqa: E402
from segloop.store.vocabulary import ROLE_ORDER, AuditAction, Role  # noqa: E402
from segloop.training.jobs import cancel, start_training  # noqa: E402

ANN = Identity("sub-ann", "ann@example.org", "Ann Annotator")
REV = Identity("sub-rev", "rev@example.org", "Rex Reviewer")
BOSS = Identity("sub-boss", "boss@example.org", "Bo Admin")
VIEW = Identity("sub-vic", "vic@elsewhere.org", "Vic Viewer")


@pytest.fixture
def roles(monkeypatch, tmp_path):
    """A roles file: boss is the first admin (SEGLOOP_ADMIN), ann an annotator, rev a reviewer."""
    path = tmp_path / "roles.toml"
    path.write_text('[roles]\n"ann@example.org" = "annotator"\n"rev@example.org" = "reviewer"\n')
    monkeypatch.setenv("SEGLOOP_ROLES", str(path))
    monkeypatch.setenv("SEGLOOP_ADMIN", "boss@example.org")
    monkeypatch.delenv("SEGLOOP_DEFAULT_ROLE", raising=False)
    return path


@pytest.fixture
def ws(tmp_path, roles):
    """A workspace with one small scan and one (dummy) registered model, v1, active."""
    store = Datastore(workspace=tmp_path / "ws")
    img = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8), np.eye(4)), str(img))
    scan = store.add_scan("case_a", img, "imported")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx")
    register_model(store, onnx, activate=True, author="segloop", identity=SYSTEM)
    return store, scan, load_scan(img), onnx


def _label(ref) -> np.ndarray:
    lab = np.zeros(ref.shape, np.uint8)
    lab[1:3, 2:4, 3:5] = 1
    return lab


# --------------------------------------------------------------------------- the permission model


def test_each_role_may_do_what_the_weaker_roles_may_and_no_more():
    table = {r: {a for a in Action if permits(r, a)} for r in ROLE_ORDER}
    assert table[Role.NONE] == set()
    assert table[Role.VIEWER] == {Action.VIEW}
    assert table[Role.ANNOTATOR] == {Action.VIEW, Action.SEGMENT, Action.SAVE}
    assert table[Role.REVIEWER] == table[Role.ANNOTATOR] | {Action.APPROVE}
    assert table[Role.ADMIN] == set(Action)
    for weaker, stronger in zip(ROLE_ORDER, ROLE_ORDER[1:]):
        assert table[weaker] <= table[stronger]
    assert set(MIN_ROLE) == set(Action)


def test_require_refuses_with_who_what_and_the_role_needed():
    require(ANN, Action.SAVE, Role.ANNOTATOR)  # allowed: no exception
    with pytest.raises(PermissionDenied, match=r"ann@example.org has the annotator role and may not activate "
                                               r"models: that needs the admin role\."):
        require(ANN, Action.ACTIVATE, Role.ANNOTATOR)
    with pytest.raises(PermissionDenied, match="has no role in this workspace.*reviewer role or higher"):
        require(VIEW, Action.APPROVE, None)
    assert issubclass(PermissionDenied, SegLoopError)  # pages and the CLI show it as one sentence
    for action in Action:  # local mode: one person, every right, as before sign-in existed
        require(local_identity(), action, None)


def test_roles_from_configuration_and_from_the_app(ws, monkeypatch, roles):
    store = ws[0]
    assert [role_of(store, i) for i in (ANN, REV, BOSS, VIEW)] == ["annotator", "reviewer", "admin", "viewer"]
    assert role_of(store, local_identity()) == "admin"
    # an unverified address gets the default role only, whatever it is listed as
    assert role_of(store, Identity("x", "boss@example.org", email_verified=False)) == "viewer"
    # roles given in the app win over the roles file, never over the configured admins
    set_role(store, BOSS, "@elsewhere.org", "annotator")
    set_role(store, BOSS, "ANN@example.org", "reviewer")
    assert role_of(store, VIEW) == "annotator" and role_of(store, ANN) == "reviewer"
    with pytest.raises(SegLoopError, match="neither an e-mail address"):
        set_role(store, BOSS, "not an address", "viewer")
    with pytest.raises(SegLoopError, match="unknown role"):
        set_role(store, BOSS, "a@b.org", "superuser")
    with pytest.raises(PermissionDenied):
        set_role(store, REV, "boss@example.org", "none")
    set_role(store, BOSS, "boss@example.org", "none")
    assert role_of(store, BOSS) == "admin"  # the first admin comes from configuration
    assert remove_role(store, BOSS, "ann@example.org") and role_of(store, ANN) == "annotator"
    assert not remove_role(store, BOSS, "ann@example.org")
    # the default for strangers: the roles file, overridden by SEGLOOP_DEFAULT_ROLE ("none" locks them out)
    roles.write_text('default = "none"\n[roles]\n"ann@example.org" = "annotator"\n')
    assert role_of(store, Identity("s", "who@nowhere.org")) == "none"
    monkeypatch.setenv("SEGLOOP_DEFAULT_ROLE", "annotator")
    assert role_of(store, Identity("s", "who@nowhere.org")) == "annotator"
    changes = [e for e in store.audit_entries() if e.action == AuditAction.ROLE_CHANGE]
    assert [(e.target, e.detail["role"], e.actor_email) for e in changes] == [
        ("@elsewhere.org", "annotator", "boss@example.org"), ("ann@example.org", "reviewer", "boss@example.org"),
        ("boss@example.org", "none", "boss@example.org"), ("ann@example.org", None, "boss@example.org")]


def test_roles_file_in_the_workspace_and_broken_files(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGLOOP_ROLES", raising=False)
    monkeypatch.delenv("SEGLOOP_ADMIN", raising=False)
    monkeypatch.delenv("SEGLOOP_DEFAULT_ROLE", raising=False)
    assert load_roles_config(tmp_path).admins == () and load_roles_config(tmp_path).default == "viewer"
    (tmp_path / "roles.toml").write_text('admins = ["Lead@Example.org"]\n[roles]\n"@example.org" = "reviewer"\n')
    cfg = load_roles_config(tmp_path)
    assert cfg.admins == ("lead@example.org",) and cfg.roles == {"@example.org": "reviewer"}
    (tmp_path / "roles.toml").write_text('[roles]\n"a@b.org" = "boss"\n')
    with pytest.raises(SegLoopError, match="unknown role 'boss'"):
        load_roles_config(tmp_path)
    (tmp_path / "roles.toml").write_text("[roles\n")
    with pytest.raises(SegLoopError, match="not valid TOML"):
        load_roles_config(tmp_path)
    monkeypatch.setenv("SEGLOOP_ROLES", str(tmp_path / "missing.toml"))
    with pytest.raises(SegLoopError, match="cannot be read"):
        load_roles_config(tmp_path)
    monkeypatch.delenv("SEGLOOP_ROLES")
    (tmp_path / "roles.toml").write_text('admins = ["@example.org"]\n')
    with pytest.raises(SegLoopError, match="not a whole domain"):
        load_roles_config(tmp_path)


# --------------------------------------------------------------------------- the core refuses, and records who


def test_saves_and_approvals_are_checked_and_recorded_with_the_identity(ws):
    store, scan, ref, _ = ws
    with pytest.raises(PermissionDenied, match="vic@elsewhere.org has the viewer role and may not save"):
        save_label_version(store, scan.id, _label(ref), ref, "correction", identity=VIEW)
    assert store.label_versions(scan.id) == [] and store.audit_entries(limit=1)[0].action == "activate"
    model_v = save_label_version(store, scan.id, _label(ref) * 0, ref, "model", author="model", identity=VIEW)
    assert model_v.author_subject == ""  # a model's output is nobody's save: no role needed, no audit entry
    v = save_label_version(store, scan.id, _label(ref), ref, "correction", author="typed text", identity=ANN,
                           parent_version_id=model_v.id)
    assert (v.author, v.author_subject, v.author_email) == ("ann@example.org", "sub-ann", "ann@example.org")
    with pytest.raises(PermissionDenied, match="may not approve"):
        approve(store, v.id, identity=ANN)
    a = approve(store, v.id, identity=REV)
    assert (a.kind, a.author, a.author_subject) == ("approved", "rev@example.org", "sub-rev")
    trail = [e for e in store.audit_entries() if e.action in ("save", "approve")]
    assert [(e.action, e.actor_subject, e.actor_email, e.actor_role, e.target) for e in trail] == [
        ("save", "sub-ann", "ann@example.org", "annotator", f"scan {scan.id} (case_a) v2"),
        ("approve", "sub-rev", "rev@example.org", "reviewer", f"scan {scan.id} (case_a) v3")]
    assert trail[1].detail["parent_version_id"] == v.id and trail[1].detail["version_id"] == a.id


def test_local_mode_keeps_the_typed_author_and_records_the_os_user(ws):
    store, scan, ref, _ = ws
    v = save_label_version(store, scan.id, _label(ref), ref, "correction", author="ann")
    assert v.author == "ann" and v.author_subject == local_identity().subject and v.author_email == ""
    entry = store.audit_entries()[-1]
    assert (entry.action, entry.actor_name, entry.actor_role) == ("save", "ann", "local")


def test_activation_and_rollback_need_an_admin_and_record_who(ws, tmp_path):
    store, _, _, onnx = ws
    register_model(store, onnx, note="v2")
    for who in (ANN, REV):
        with pytest.raises(PermissionDenied, match="may not activate models"):
            activate(store, 2, identity=who)
        with pytest.raises(PermissionDenied, match="may not roll back"):
            rollback(store, identity=who)
    with pytest.raises(PermissionDenied):
        register_model(store, onnx, activate=True, identity=REV)
    assert store.active_model().version == 1 and len(store.models()) == 2  # nothing was written
    activate(store, 2, author="ignored", identity=BOSS)
    rollback(store, identity=BOSS)
    history = activation_history(store)
    assert [(h["action"], h["author"], h["author_subject"], h["author_email"]) for h in history] == [
        ("activate", "segloop", "segloop:system", ""), ("activate", "boss@example.org", "sub-boss", "boss@example.org"),
        ("rollback", "boss@example.org", "sub-boss", "boss@example.org")]
    trail = store.audit_entries()
    assert [(e.action, e.target, e.actor_subject) for e in trail] == [
        ("activate", "model v1", "segloop:system"), ("activate", "model v2", "sub-boss"),
        ("rollback", "model v1", "sub-boss")]
    assert trail[1].detail == {"model_id": store.model_by_version(2).id, "version": 2, "previous_version": 1}


def test_training_starts_and_cancels_need_an_admin(ws):
    store = ws[0]
    with pytest.raises(PermissionDenied, match="may not start or cancel training runs"):
        start_training(store, {"val_cases": []}, identity=REV)
    assert store.runs() == []  # refused before anything was checked or written
    with store.write() as tx:  # a queued run (no process), as start_training records one
        rid = tx.insert_run(store.active_model().id, {"epochs": 1}, (BOSS.label, BOSS.subject, BOSS.email))
    assert store.run(rid).started_by_subject == "sub-boss"
    with pytest.raises(PermissionDenied):
        cancel(store, rid, identity=ANN)
    cancel(store, rid, identity=BOSS)
    entry = store.audit_entries()[-1]
    assert (entry.action, entry.target, entry.actor_email) == ("train_cancel", f"run #{rid}", "boss@example.org")


# --------------------------------------------------------------------------- the audit trail


def test_the_audit_trail_is_append_only_readable_by_admins_and_exports_as_csv(ws):
    store, scan, ref, _ = ws
    save_label_version(store, scan.id, _label(ref), ref, "correction", identity=ANN)
    conn = sqlite3.connect(store.path)
    try:
        for sql in ("UPDATE audit_log SET actor_email = 'someone@else.org'", "DELETE FROM audit_log",
                    "INSERT OR REPLACE INTO audit_log (id, created_at, actor_subject, action) VALUES (1, 0, 'x', 'save')"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        with pytest.raises(sqlite3.IntegrityError):  # only the actions of the vocabulary
            conn.execute("INSERT INTO audit_log (created_at, actor_subject, action) VALUES (0, 'x', 'delete')")
    finally:
        conn.close()
    for who in (ANN, REV, VIEW):
        with pytest.raises(PermissionDenied, match="may not read the audit trail"):
            audit_trail(store, who)
    entries = audit_trail(store, BOSS)
    assert [e.action for e in entries] == ["activate", "save"]
    rows = list(csv.DictReader(io.StringIO(audit_csv(entries))))
    assert list(rows[0]) == ["id", "time", "subject", "email", "name", "role", "action", "target", "detail"]
    assert (rows[1]["subject"], rows[1]["email"], rows[1]["role"], rows[1]["action"]) == (
        "sub-ann", "ann@example.org", "annotator", "save")
    assert rows[1]["time"].endswith("Z") and '"version": 1' in rows[1]["detail"]
    assert audit_csv([]).startswith("id,time,subject")


def test_the_vocabulary_matches_the_check_constraints():
    schema = next(m for m in MIGRATIONS if isinstance(m, str) and "CREATE TABLE audit_log" in m)
    assert f"role IN ({', '.join(repr(str(r)) for r in ROLE_ORDER)})" in schema
    actions = schema.split("action IN (")[1].split(")")[0]
    assert [a.strip().strip("'") for a in actions.replace("\n", " ").split(",")] == [str(a) for a in AuditAction]


def test_command_line_records_the_os_user_or_the_author_and_exports_the_trail(ws, tmp_path):
    store, scan, ref, _ = ws
    lab = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(_label(ref), np.eye(4)), str(lab))  # the scan's grid (identity affine)
    args = ["workspace", "add-label", str(scan.id), str(lab), "--workspace", str(store.workspace)]
    assert cli_main(args) == 0
    assert cli_main(args + ["--author", "Dr Slicer"]) == 0
    versions = store.label_versions(scan.id)
    me = local_identity()
    assert [(v.author, v.author_subject) for v in versions] == [(me.name, me.subject), ("Dr Slicer", me.subject)]
    out = tmp_path / "trail.csv"
    assert cli_main(["workspace", "audit", "--workspace", str(store.workspace), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["action"], r["name"]) for r in rows] == [("activate", "segloop"), ("save", me.name), ("save", "Dr Slicer")]


# --------------------------------------------------------------------------- [auth] from the environment


def test_auth_settings_from_a_hugging_face_space_or_segloop_variables(tmp_path):
    path = tmp_path / ".streamlit" / "secrets.toml"
    assert "local mode" in write_auth_secrets(path, {}) and not path.exists()
    env = {"OAUTH_CLIENT_ID": "cid", "OAUTH_CLIENT_SECRET": "top-secret", "OPENID_PROVIDER_URL": "https://huggingface.co/",
           "SPACE_HOST": "me-segloop.hf.space", "OAUTH_SCOPES": "openid profile email"}
    said = write_auth_secrets(path, env)
    assert "Hugging Face Space" in said and "top-secret" not in said
    auth = tomllib.loads(path.read_text())["auth"]
    assert auth["redirect_uri"] == "https://me-segloop.hf.space/oauth2callback"
    assert auth["server_metadata_url"] == "https://huggingface.co/.well-known/openid-configuration"
    assert (auth["client_id"], auth["client_secret"]) == ("cid", "top-secret")
    assert auth["client_kwargs"] == {"scope": "openid profile email"} and len(auth["cookie_secret"]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # settings made by hand win: a second start leaves the file alone
    before = path.read_text()
    assert "left as it is" in write_auth_secrets(path, {**env, "OAUTH_CLIENT_ID": "other"})
    assert path.read_text() == before
    # any provider; other secrets in the file are kept
    other = tmp_path / "other.toml"
    other.write_text('api_key = "k"\n')
    write_auth_secrets(other, {"SEGLOOP_OIDC_CLIENT_ID": "c", "SEGLOOP_OIDC_CLIENT_SECRET": "s",
                               "SEGLOOP_OIDC_PROVIDER_URL": "http://127.0.0.1:9000/.well-known/openid-configuration",
                               "SEGLOOP_OIDC_PROMPT": "login", "SEGLOOP_COOKIE_SECRET": "fixed"})
    data = tomllib.loads(other.read_text())
    assert data["api_key"] == "k" and data["auth"]["cookie_secret"] == "fixed"
    assert data["auth"]["redirect_uri"] == "http://localhost:{port}/oauth2callback"
    assert data["auth"]["server_metadata_url"] == "http://127.0.0.1:9000/.well-known/openid-configuration"
    assert data["auth"]["client_kwargs"] == {"scope": "openid profile email", "prompt": "login"}
    assert auth_settings({"OAUTH_CLIENT_ID": "only this"}) is None  # incomplete: local mode


def test_auth_setup_examples_run():
    import doctest

    import components.auth_setup

    assert doctest.testmod(components.auth_setup).failed == 0
