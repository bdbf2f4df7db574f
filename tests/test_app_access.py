"""The pages with sign-in configured, through AppTest (Streamlit's [auth] secrets and a signed-in `st.user`):
the sign-in screen, what each role sees enabled, who is recorded, and the admins' Access & audit page.

The real sign-in, through an OpenID Connect provider in a browser, is tests/e2e/test_sign_in_e2e.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apptest_tables import table as _table  # noqa: E402

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.io.readers import load_scan  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import save_label_version  # noqa: E402
from segloop.store.registry import SHIPPED_STEM, ensure_shipped_model, register_model  # noqa: E402

AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "c", "client_secret": "s",
                 "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}
USERS = {"annotator": ("sub-ann", "ann@example.org"), "reviewer": ("sub-rev", "rev@example.org"),
         "admin": ("sub-boss", "boss@example.org"), "viewer": ("sub-vic", "vic@example.org")}


def _page(name: str, role: str | None) -> AppTest:
    """A page as `role` (None: nobody signed in), with sign-in configured."""
    at = AppTest.from_file(str(ROOT / (f"pages/{name}.py" if name != "app" else "app.py")), default_timeout=60)
    at.secrets = dict(AUTH)
    if role is None:
        at.user = {"is_logged_in": False}
    else:
        sub, email = USERS[role]
        at.user = {"is_logged_in": True, "sub": sub, "email": email, "email_verified": True, "name": role.title()}
    return at


@pytest.fixture()
def ws(tmp_path, monkeypatch):
    """A workspace with the shipped model (v1, active), a copy of it (v2) and one corrected scan."""
    if not (WEIGHTS_DIR / f"{SHIPPED_STEM}.onnx").is_file():
        pytest.skip("the shipped model is missing")
    ws = tmp_path / "ws"
    roles = tmp_path / "roles.toml"
    roles.write_text('[roles]\n"ann@example.org" = "annotator"\n"rev@example.org" = "reviewer"\n')
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    monkeypatch.setenv("SEGLOOP_ROLES", str(roles))
    monkeypatch.setenv("SEGLOOP_ADMIN", "boss@example.org")
    monkeypatch.delenv("SEGLOOP_DATA_DIR", raising=False)
    monkeypatch.delenv("SEGLOOP_DEFAULT_ROLE", raising=False)
    store = Datastore(workspace=ws)
    ensure_shipped_model(store)
    register_model(store, WEIGHTS_DIR / f"{SHIPPED_STEM}.onnx", note="a copy")
    img = tmp_path / "case_a.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8), np.float32), np.eye(4)), str(img))
    scan = store.add_scan("case_a", img, "imported")
    ref = load_scan(img)
    lab = np.zeros(ref.shape, np.uint8)
    lab[2:4, 2:4, 2:4] = 1
    save_label_version(store, scan.id, lab, ref, "correction", author="local name")
    return store


def test_nobody_signed_in_sees_only_the_sign_in_screen(ws):
    at = _page("app", None).run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert any("Sign in to use this workspace" in i.value for i in at.info)
    assert not at.dataframe  # no page ran
    at = _page("models", None).run()  # a page on its own (a deep link) refuses too
    assert [b.label for b in at.button] == ["Sign in"] and not at.dataframe


def test_the_sidebar_says_who_is_signed_in_and_local_mode_says_so(ws):
    at = _page("app", "annotator").run()
    assert not at.exception, at.exception
    assert any("Signed in as **ann@example.org** (annotator)" in c.value for c in at.sidebar.caption)
    assert "Sign out" in [b.label for b in at.sidebar.button]
    local = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert any("Local mode: single user, no sign-in." in c.value for c in local.sidebar.caption)
    assert "Sign out" not in [b.label for b in local.sidebar.button]


def test_a_signed_in_person_without_a_role_is_turned_away(ws, monkeypatch):
    monkeypatch.setenv("SEGLOOP_DEFAULT_ROLE", "none")
    at = _page("app", "viewer").run()
    assert any("vic@example.org has no access to this workspace" in w.value for w in at.warning)
    assert not at.dataframe


def test_models_page_activation_is_for_admins_and_records_them(ws):
    for role in ("annotator", "reviewer"):
        at = _page("models", role).run()
        assert not at.exception, at.exception
        assert at.button(key="activate_btn").disabled and at.button(key="rollback_btn").disabled
        assert any("needs the admin role" in c.value for c in at.caption)
    at = _page("models", "admin").run()
    assert not at.button(key="activate_btn").disabled and not at.button(key="rollback_btn").disabled
    at.selectbox(key="activate_version").select(2).run()
    at.button(key="activate_btn").click().run()
    assert not at.exception, at.exception
    assert ws.active_model().version == 2
    history = _table(at, "Action")
    assert history["By"][0] == "boss@example.org"
    last = ws.audit_entries()[-1]
    assert (last.action, last.actor_subject, last.actor_email, last.actor_role) == (
        "activate", "sub-boss", "boss@example.org", "admin")


def test_cases_page_approval_is_for_reviewers_and_the_name_box_is_gone(ws):
    at = _page("cases", "annotator").run()
    assert not at.exception, at.exception
    assert at.button(key="approve_btn").disabled
    assert not [t for t in at.sidebar.text_input if t.label == "Your name"]
    at = _page("cases", "reviewer").run()
    assert not at.button(key="approve_btn").disabled
    at.button(key="approve_btn").click().run()
    assert not at.exception, at.exception
    table = _table(at, "Last touched by")
    assert list(table["Last touched by"]) == ["rev@example.org"] and list(table["Status"]) == ["approved"]
    v = ws.label_versions(ws.scans()[0].id)[-1]
    assert (v.kind, v.author_subject, v.author_email) == ("approved", "sub-rev", "rev@example.org")


def test_access_page_gives_roles_and_shows_the_audit_trail_to_admins_only(ws):
    at = _page("access", "reviewer").run()
    assert any("may not use this page" in w.value for w in at.warning) and not at.dataframe
    at = _page("access", "admin").run()
    assert not at.exception, at.exception
    at.text_input(key="access_principal").input("@example.org")
    at.selectbox(key="access_role").select("reviewer")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    assert any("@example.org now has the reviewer role" in s.value for s in at.success)
    roles = _table(at, "E-mail or domain")
    assert ("@example.org", "reviewer", "boss@example.org") in set(
        zip(roles["E-mail or domain"], roles["Role"], roles["By"]))
    trail = _table(at, "Action")
    assert list(trail["Action"][:2]) == ["role_change", "save"] and trail["Who"][0] == "boss@example.org"
    csv = at.get("download_button")[0]
    assert csv.proto.label == "Download the audit trail (CSV)"


def test_a_page_on_its_own_turns_away_a_person_without_a_role(ws, monkeypatch):
    monkeypatch.setenv("SEGLOOP_DEFAULT_ROLE", "none")
    at = _page("models", "viewer").run()
    assert any("has no access to this workspace" in w.value for w in at.warning) and not at.dataframe


def test_an_unreadable_secrets_file_keeps_the_app_closed(ws, tmp_path):
    """A broken secrets file may hold the sign-in settings: never fall back to local mode's every right."""
    import streamlit as st
    from streamlit.testing.v1.util import patch_config_options

    broken = tmp_path / "secrets.toml"
    broken.write_text("[auth\nclient_id = 'x'\n")
    with patch_config_options({"secrets.files": [str(broken)]}):
        st.secrets._reset()
        try:
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        finally:
            st.secrets._reset()
    assert any("cannot be read" in e.value for e in at.error) and not at.dataframe
