"""End to end with a real identity provider: people sign in through OpenID Connect (a local `oidc-provider`
run by Node.js, see oidc_helpers.py) in headless chromium, and each sees only what their role allows:
an annotator saves a correction but cannot activate a model, a reviewer approves it, an admin activates a
model and reads the audit trail, where every action stands under the right identity.

The app gets its [auth] settings the way a deployment does: `components.auth_setup` writes them from
SEGLOOP_OIDC_* variables; Streamlit reads them through STREAMLIT_SECRETS_FILES (nothing is written into
the checkout). Roles come from a roles file (SEGLOOP_ROLES) and the first admin from SEGLOOP_ADMIN.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest

from e2e.oidc_helpers import CLIENT_ID, CLIENT_SECRET, ensure_installed, node, oidc_provider
from e2e.page_helpers import no_exception, run_segmentation, wait_idle
from segloop.config import WEIGHTS_DIR
from segloop.store.database import Datastore
from segloop.store.registry import SHIPPED_STEM, register_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CASE = "hippocampus_042"
USERS = {  # login (= subject) -> claims; the roles file below gives them their roles
    "u-ann": {"email": "ann@example.org", "name": "Ann Annotator"},
    "u-rev": {"email": "rev@example.org", "name": "Rex Reviewer"},
    "u-boss": {"email": "boss@example.org", "name": "Bo Admin"},
}


def _missing(reason: str) -> None:
    """Fail in CI (a missing prerequisite there is a broken pipeline); skip on a developer machine."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def signed_in_app(start_server, msd_dir: Path, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(app URL, workspace): the app with sign-in through a local OpenID provider, roles from a file."""
    if node() is None:
        _missing("node not found: install Node.js 20+ to run the sign-in tests")
    if not (WEIGHTS_DIR / f"{SHIPPED_STEM}.onnx").is_file():
        pytest.skip("the shipped model is missing")
    modules, why = ensure_installed()
    if modules is None:
        _missing(why)
    from components.auth_setup import write_auth_secrets

    tmp = tmp_path_factory.mktemp("signin")
    with oidc_provider(modules, USERS, artifacts_dir / "oidc-provider.log") as issuer:
        secrets = tmp / "secrets.toml"
        said = write_auth_secrets(secrets, {
            "SEGLOOP_OIDC_CLIENT_ID": CLIENT_ID, "SEGLOOP_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "SEGLOOP_OIDC_PROVIDER_URL": issuer, "SEGLOOP_OIDC_PROMPT": "login",
            "SEGLOOP_OIDC_REDIRECT_URI": "http://127.0.0.1:{port}/oauth2callback"})
        assert "[auth] written" in said, said
        roles = tmp / "roles.toml"
        roles.write_text('[roles]\n"ann@example.org" = "annotator"\n"rev@example.org" = "reviewer"\n')
        ws = tmp / "ws"
        with pytest.MonkeyPatch.context() as mp:  # the server's environment (copied when it starts)
            mp.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
            mp.setenv("SEGLOOP_ROLES", str(roles))
            mp.setenv("SEGLOOP_ADMIN", "boss@example.org")
            mp.delenv("SEGLOOP_DEFAULT_ROLE", raising=False)
            with start_server(msd_dir, ws, artifacts_dir / "streamlit-signin.log") as base:
                yield base, ws


def _sign_in(browser, base: str, login: str):
    """A fresh browser session signed in as `login` through the provider's form; returns its page."""
    page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/", wait_until="domcontentloaded")
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=login]").fill(login)  # the provider's own page
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_text("Signed in as").wait_for()  # back in the app, the sidebar names them
    wait_idle(page)
    no_exception(page)
    return page


def _go(page, title: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading).first.wait_for()
    wait_idle(page)
    no_exception(page)


def test_each_role_does_what_it_may_and_the_audit_trail_names_them(browser, signed_in_app, artifacts_dir: Path):
    base, ws = signed_in_app
    # nobody signed in: the sign-in screen and nothing else
    anon = browser.new_context().new_page()
    anon.goto(f"{base}/models", wait_until="domcontentloaded")
    anon.get_by_role("button", name="Sign in").wait_for(timeout=180_000)
    assert anon.locator('[data-testid="stSidebarNav"]').count() == 0
    anon.context.close()

    # the annotator: segments and saves a correction, recorded as them; may not activate
    page = _sign_in(browser, base, "u-ann")
    assert "ann@example.org (annotator)" in page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Access & audit" not in page.locator('[data-testid="stSidebarNav"]').inner_text()
    run_segmentation(page, base, CASE)
    page.locator(".st-key-seg_grow button").click()
    page.get_by_text(re.compile(r"Unsaved changes: \d+ voxels")).wait_for()
    assert page.locator(".st-key-seg_author").count() == 0  # no name box: the identity is the author
    page.get_by_text("Saved versions are recorded as ann@example.org").wait_for()
    page.locator(".st-key-seg_save button").click()
    saved = page.get_by_text(re.compile(r"^Saved as version \d+"))
    saved.wait_for()
    version = int(re.search(r"Saved as version (\d+)", saved.inner_text()).group(1))
    _go(page, "Models", "Models")
    for key in ("activate_btn", "rollback_btn"):
        page.locator(f".st-key-{key} button").first.wait_for()
        buttons = page.locator(f".st-key-{key} button").all()
        assert buttons and all(b.is_disabled() for b in buttons), key
    page.screenshot(path=str(artifacts_dir / "signin-annotator-models.png"), full_page=True)
    page.context.close()

    # the reviewer: approves it
    page = _sign_in(browser, base, "u-rev")
    _go(page, "Cases", "Cases")
    assert page.locator(".st-key-approve_case input").input_value() == f"{CASE} (v{version} by ann@example.org)"
    page.locator(".st-key-approve_btn button").first.click()
    page.get_by_text(f"{CASE}: approved as label version v{version + 1}.").wait_for()
    no_exception(page)
    page.context.close()

    # the admin: activates a newly registered version, then reads the audit trail
    store = Datastore(workspace=ws)
    register_model(store, WEIGHTS_DIR / f"{SHIPPED_STEM}.onnx", note="registered by the test")
    page = _sign_in(browser, base, "u-boss")
    _go(page, "Models", "Models")
    activate_btn = page.locator(".st-key-activate_btn button").first
    activate_btn.wait_for()
    assert activate_btn.is_enabled()  # the picker starts on the newest version, v2
    activate_btn.click()
    page.get_by_text("v2 is now the active model").wait_for()
    no_exception(page)
    _go(page, "Access & audit", "Access & audit")
    page.get_by_role("heading", name="Audit trail").wait_for()
    page.locator('[data-testid="stDataFrame"]').last.wait_for()  # the trail, newest first
    page.screenshot(path=str(artifacts_dir / "signin-admin-audit.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the audit trail (CSV)").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    page.context.close()

    assert store.active_model().version == 2
    versions = {v.version: v for v in store.label_versions(store.scans_named(CASE)[0].id)}
    assert (versions[version].author, versions[version].author_subject) == ("ann@example.org", "u-ann")
    assert (versions[version + 1].kind, versions[version + 1].author_subject) == ("approved", "u-rev")
    people = [(e.action, e.actor_subject, e.actor_email, e.actor_role) for e in store.audit_entries()
              if e.actor_subject.startswith("u-")]
    assert people == [("save", "u-ann", "ann@example.org", "annotator"),
                      ("approve", "u-rev", "rev@example.org", "reviewer"),
                      ("activate", "u-boss", "boss@example.org", "admin")]
    assert [(r["action"], r["subject"], r["email"], r["role"]) for r in exported if r["subject"].startswith("u-")] == people
