"""End to end: with the app open in a browser and nobody using it, the Streamlit server is quiet.

A functional check, not a benchmark: an idle server (file watcher off, no polling, no timers rerunning
pages) spends well under 2 % of one CPU core. A server of its own (fresh, nothing else running in it)
is measured over 60 s of idleness, its child processes included, with the Viewer open in headless chromium.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from e2e.page_helpers import no_exception, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IDLE_S = 60.0
SETTLE_S = 10.0  # let the first render's stragglers (fragments, component iframes) finish
MAX_CORE_FRACTION = 0.02


def _server_process(url: str) -> psutil.Process:
    """The `streamlit run` process listening on the URL's port (started by the conftest fixture)."""
    port = url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "streamlit" in " ".join(cmd) and "--server.port" in cmd and cmd[cmd.index("--server.port") + 1] == port:
            return proc
    raise AssertionError(f"no streamlit process serves port {port}")


def _cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of the process and its children (those alive now)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def test_the_server_idles_quietly_with_the_app_open(start_server, browser, msd_dir: Path, tmp_path: Path,
                                                    artifacts_dir: Path) -> None:
    with start_server(msd_dir, tmp_path / "ws", artifacts_dir / "streamlit-quiet-server.log") as url:
        server = _server_process(url)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{url}/?case=hippocampus_001", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Viewer").first.wait_for(timeout=180_000)
            page.get_by_text("Label volumes").first.wait_for(timeout=180_000)
            wait_idle(page)
            no_exception(page)
            page.wait_for_timeout(SETTLE_S * 1000)
            wait_idle(page)

            start_cpu, start = _cpu_seconds(server), time.monotonic()
            page.wait_for_timeout(IDLE_S * 1000)  # the page stays open and connected
            used, elapsed = _cpu_seconds(server) - start_cpu, time.monotonic() - start
            no_exception(page)
            assert server.is_running()
        finally:
            context.close()
    share = used / elapsed
    print(f"idle server: {used:.3f} CPU s over {elapsed:.1f} s = {share:.2%} of one core")
    assert share < MAX_CORE_FRACTION, (
        f"the idle server used {used:.2f} CPU s in {elapsed:.0f} s ({share:.1%} of a core; at most "
        f"{MAX_CORE_FRACTION:.0%} expected): something reruns or polls while nobody uses the app")
