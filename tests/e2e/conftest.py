"""Fixtures for the end-to-end browser tests: a real Streamlit server and a headless Debian chromium.

The server runs `streamlit run app.py` on a free port with the MSD hippocampus folder as its data
folder and a throw-away workspace. Its log goes to test-artifacts/streamlit-server.log. The browser is
Debian's /usr/bin/chromium driven by Playwright (we never run `playwright install`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.processes import free_port, serving
from segloop.config import PROJECT_ROOT, shared_data_dir

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: The server imports torch, MONAI and plotly on a 2-core machine that may be busy: be patient.
SERVER_START_TIMEOUT_S = 180.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> None:
    """Fail in CI (a missing prerequisite there is a broken pipeline); skip on a developer machine."""
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the repository root (gitignored): screenshots and server logs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def msd_dir() -> Path:
    """The real MSD Task04 hippocampus folder (../shared/data/msd-hippocampus)."""
    folder = shared_data_dir() / "msd-hippocampus"
    if not (folder / "imagesTr").is_dir():
        _missing(f"MSD hippocampus data not found at {folder} (set SEGLOOP_SHARED_DATA)")
    return folder


@contextlib.contextmanager
def streamlit_server(data_dir: Path | None, workspace: Path, log_path: Path) -> Iterator[str]:
    """Run `streamlit run app.py` on a free port until the block ends; yields its base URL once healthy.

    `data_dir` None starts the app without SEGLOOP_DATA_DIR: it then opens its built-in demo scans
    (the whole MNI152 head first).
    """
    app = Path(os.environ.get("SEGLOOP_E2E_APP", PROJECT_ROOT / "app.py"))
    if not app.is_file():
        pytest.fail(f"app entry point not found: {app}", pytrace=False)
    port = free_port()
    env = {
        **os.environ,
        "SEGLOOP_DATA_DIR": str(data_dir),
        "SEGLOOP_WORKSPACE": str(workspace),
        "PYTHONUNBUFFERED": "1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    if data_dir is None:
        del env["SEGLOOP_DATA_DIR"]
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    base = f"http://127.0.0.1:{port}"
    with serving(cmd, f"{base}/_stcore/health", log_path, SERVER_START_TIMEOUT_S, "streamlit",
                 fail=lambda message: pytest.fail(message, pytrace=False), cwd=PROJECT_ROOT, env=env):
        yield base


@pytest.fixture(scope="session")
def start_server():
    """`streamlit_server` for tests that need a server of their own (e.g. a freshly started one)."""
    return streamlit_server


@pytest.fixture(scope="session")
def app_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SEGLOOP_WORKSPACE of the `app_url` server (open it with `segloop.store.database.Datastore`)."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def app_url(msd_dir: Path, artifacts_dir: Path, app_workspace: Path) -> Iterator[str]:
    """The app on a free port for the whole session (one server keeps the suite fast)."""
    with streamlit_server(msd_dir, app_workspace, artifacts_dir / "streamlit-server.log") as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian chromium driven by Playwright (fails in CI when chromium is missing)."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, artifacts_dir: Path) -> Iterator[object]:
    """A fresh 1600x1000 page; on failure its screenshot lands in test-artifacts/<test>-failure.png."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    pg.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            stem = request.node.name.replace("/", "_")
            try:
                pg.screenshot(path=str(artifacts_dir / f"{stem}-failure.png"), full_page=True)
            except Exception:  # noqa: BLE001 - best effort debugging aid
                pass
            (artifacts_dir / f"{stem}-console.log").write_text("\n".join(console))
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Remember each phase's report on the test item so fixtures can react to failures."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

