"""Browser benchmark: the volume view in headless Chromium vs the per-step Streamlit round trip it replaced.

For a Decathlon crop (SEGLOOP_DATA_DIR = the shared MSD hippocampus folder) and for the whole-head MNI152
demo (a server without SEGLOOP_DATA_DIR), the script starts `streamlit run app.py` itself (headless, a
free port, a throw-away SEGLOOP_WORKSPACE), opens the Viewer in Debian's /usr/bin/chromium through
Playwright and measures:

- time to first image: navigation start -> the first slice image on screen (`.vv-cell[data-preview]`: the
  slices sent as PNGs with the page, shown while Plotly.js loads; or `[data-drawn]`, drawn by Plotly),
  the first Plotly draw, and time until the volume is in the browser (every cell `data-loaded`), on the first visit
  after the server started (cold: imports, scan read) and on a second visit in a new browser context
  (warm server, empty browser cache);
- slice-step latency of the axial view for keyboard steps (ArrowUp/ArrowDown) and mouse-wheel steps,
  from `window.__segloopVV.timings` (input event's timeStamp -> the animation frame after Plotly drew
  the new slice), one step at a time, after a short warm-up;
- payload: the bytes of the volume files the page fetched from /media/ (packed scan and labels, as
  served), per plane (total / 3: one volume serves all three planes), per voxel, and the voxel count;
  Plotly.js (also served from /media/, deflated, kept in Cache Storage afterwards) is reported apart.

Baseline, measured in the same run: the path a user had before, one `st.slider` and one `st.plotly_chart`
of `segloop.display.render.build_slice_figure` in an `st.fragment` (a throw-away script written to a
temporary folder, on its own server). ArrowRight on the focused slider, time from the keydown to the
chart's slice image changing (a MutationObserver on its href), one step at a time, plus the websocket
bytes received per step.

No figure here is asserted anywhere; the machine may be shared (the load average is printed).

Run: .venv/bin/python bench/browser.py [--steps 120] [--baseline-steps 30] [--case hippocampus_001]
The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segloop.data.demo import mni152_t1_path  # noqa: E402
from segloop.display import planes  # noqa: E402
from segloop.io.readers import load_scan  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
MSD = Path(os.environ.get("SEGLOOP_SHARED_DATA", "/work/shared/data")) / "msd-hippocampus"
VIEWPORT = {"width": 1600, "height": 1000}
PLANE = "axial"

#: Set before any page script runs: when the first slice image was drawn and when every plane holds the volume.
MARKS_JS = """
window.__bench = {mounted: null, firstImage: null, firstDrawn: null, loaded: null};
new MutationObserver(() => {
  const b = window.__bench;
  if (b.mounted === null && document.querySelector('.segloop-vv')) b.mounted = performance.now();
  if (b.firstImage === null && document.querySelector('.vv-cell[data-preview], .vv-cell[data-drawn]')) b.firstImage = performance.now();
  if (b.firstDrawn === null && document.querySelector('.vv-cell[data-drawn]')) b.firstDrawn = performance.now();
  if (b.loaded === null) {
    const cells = document.querySelectorAll('.vv-cell');
    if (cells.length && Array.from(cells).every(c => c.dataset.loaded === '1')) b.loaded = performance.now();
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                     attributeFilter: ['data-preview', 'data-drawn', 'data-loaded']});
"""

BASELINE_APP = '''
"""Throw-away baseline for bench/browser.py: one plane, an st.slider and an st.plotly_chart, as SegLoop drew slices before."""
import os, sys
sys.path.insert(0, os.environ["BENCH_ROOT"])
import streamlit as st
from segloop.display import planes
from segloop.display.render import build_slice_figure
from segloop.display.windowing import auto_window
from segloop.io.readers import load_label, load_scan


@st.cache_resource
def volume():
    vol = load_scan(os.environ["BENCH_SCAN"])
    lab = os.environ.get("BENCH_LABELS")
    return vol, (load_label(lab, reference=vol).array if lab else None), auto_window(vol.array)


vol, labels, (center, width) = volume()


@st.fragment
def panel():
    n = planes.n_slices(vol.shape, "axial")
    k = st.slider("Axial slice", 0, n - 1, n // 2, key="slice")
    fig = build_slice_figure(vol.array, labels, "axial", int(k), spacing=vol.spacing, center=center, width=width,
                             affine=vol.affine, label_names={1: "anterior", 2: "posterior"}, height=380,
                             uirevision="bench")
    st.plotly_chart(fig, key="chart", theme=None)


panel()
'''

#: Baseline page: the chart's slice image href, and a log of when it changed and of keydowns.
BASELINE_WATCH_JS = """() => {
  const href = () => { const img = document.querySelector('.st-key-chart image');
    return img ? (img.getAttribute('href') || img.getAttributeNS('http://www.w3.org/1999/xlink', 'href')) : null; };
  window.__base = {changes: [], keys: [], last: href()};
  new MutationObserver(() => {
    const h = href();
    if (h && h !== window.__base.last) { window.__base.last = h; window.__base.changes.push(performance.now()); }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['href']});
  document.addEventListener('keydown', (ev) => window.__base.keys.push(ev.timeStamp), true);
}"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def streamlit(script: Path, env_extra: dict[str, str | None], log_path: Path) -> Iterator[str]:
    """`streamlit run script` on a free port (headless, as tests/e2e/conftest.py runs the app); yields its URL."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    for k, v in env_extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited ({proc.returncode}); see {log_path}")
                with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit not healthy after 180 s; see {log_path}")
                time.sleep(0.5)
            yield base
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                  || !document.querySelector('[data-testid="stStatusWidget"]').innerText.includes('Running')""",
        timeout=timeout_ms)


def stats(values: list[float]) -> dict:
    a = np.asarray(values, float)
    if a.size == 0:
        return {"n": 0, "median": None, "p90": None}
    return {"n": int(a.size), "median": round(float(np.median(a)), 1), "p90": round(float(np.percentile(a, 90)), 1),
            "min": round(float(a.min()), 1), "max": round(float(a.max()), 1)}


def visit(browser, url: str) -> tuple[object, object, dict]:
    """Open the Viewer in a fresh context; returns (context, page, figures of the load)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(180_000)
    context.add_init_script(MARKS_JS)
    page = context.new_page()
    media: list = []
    page.on("response", lambda r: media.append(r) if "/media/" in r.url else None)
    page.goto(url, wait_until="commit")
    page.wait_for_function("() => window.__bench && window.__bench.loaded !== null"
                           " && document.querySelectorAll('.vv-cell[data-drawn]').length > 0", timeout=240_000)
    wait_idle(page)
    marks = page.evaluate("() => window.__bench")
    # when each file arrived (resource timing, ms since navigation start), and its size as served (decoded body)
    arrived = {e["name"]: e["responseEnd"] for e in page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => ({name: e.name, responseEnd: e.responseEnd}))")}
    volume_files, plotly_bytes, volume_at, plotly_at = [], 0, [], []
    urls = page.evaluate("""() => { const d = document.querySelector('.segloop-vv').__vv.data;
        return {plotly: d.plotly_url, volumes: [d.image, d.labels, d.extra].filter(Boolean).map(v => v.url)}; }""")
    for r in media:  # other media of the page (the sidebar's images) are not the view's
        with contextlib.suppress(Exception):
            if r.url.endswith(urls["plotly"]):  # Plotly.js, deflated; kept in Cache Storage afterwards
                plotly_bytes += len(r.body())
                plotly_at.append(arrived.get(r.url, float("nan")))
            elif any(r.url.endswith(u) for u in urls["volumes"]):
                volume_files.append(len(r.body()))
                volume_at.append(arrived.get(r.url, float("nan")))
    raw = page.evaluate("""() => { const d = document.querySelector('.segloop-vv').__vv.data;
        const n = d.image.shape.reduce((a, b) => a * b, 1), size = t => (t === 'uint16' ? 2 : 1);
        return {scan: n * size(d.image.dtype), labels: d.labels ? n * size(d.labels.dtype) : 0,
                scan_dtype: d.image.dtype, labels_dtype: d.labels ? d.labels.dtype : null}; }""")
    def r1(x):  # ms, rounded; None when a mark or a file never came (NaN timings included)
        return None if x is None or math.isnan(x) else round(x, 1)

    return context, page, {"mounted_ms": r1(marks["mounted"]), "plotly_fetched_ms": r1(max(plotly_at, default=None)),
                           "volume_fetched_ms": r1(max(volume_at, default=None)),
                           "first_image_ms": r1(marks["firstImage"]), "first_plotly_draw_ms": r1(marks["firstDrawn"]),
                           "loaded_ms": r1(marks["loaded"]),
                           "volume_bytes": sum(volume_files), "volume_files": sorted(volume_files, reverse=True),
                           "raw": raw, "plotly_js_bytes": plotly_bytes}


def step_latencies(page, how: str, steps: int, warmup: int = 10) -> list[float]:
    """One step at a time on the axial view (`how` "key" or "wheel"); the view's own timings of the measured steps."""
    cell = f".vv-cell[data-plane={PLANE}]"
    box = page.locator(f"{cell} .vv-plot").bounding_box()
    page.mouse.move(5, 5)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # pointerenter: the cell takes focus
    n = int(page.evaluate("(sel) => document.querySelector(sel).closest('.segloop-vv').__vv.data.geometry.axial.n", cell))
    k = int(page.locator(cell).get_attribute("data-slice"))
    direction = 1
    page.evaluate("() => { window.__segloopVV.timings.length = 0; }")
    for i in range(warmup + steps):
        if i == warmup:
            page.evaluate("() => { window.__segloopVV.timings.length = 0; }")
        if not 0 <= k + direction < n:
            direction = -direction
        k += direction
        if how == "key":
            page.keyboard.press("ArrowUp" if direction > 0 else "ArrowDown")
        else:
            page.mouse.wheel(0, -100 if direction > 0 else 100)
        page.wait_for_function("([sel, k]) => document.querySelector(sel).dataset.drawn === k", arg=[cell, str(k)],
                               timeout=30_000)
    page.wait_for_timeout(50)
    timings = page.evaluate("(how) => window.__segloopVV.timings.filter(t => t.how === how && t.plane === 'axial')"
                            ".map(t => t.ms)", how)
    return [float(t) for t in timings]


def measure_app(browser, name: str, env: dict, path: str, steps: int, workdir: Path) -> dict:
    with streamlit(ROOT / "app.py", {**env, "SEGLOOP_WORKSPACE": str(workdir / f"ws-{name}")},
                   workdir / f"app-{name}.log") as base:
        ctx, page, cold = visit(browser, f"{base}{path}")
        ctx.close()
        ctx, page, warm = visit(browser, f"{base}{path}")
        try:
            shape = page.evaluate("() => document.querySelector('.segloop-vv').__vv.data.image.shape")
            key = step_latencies(page, "key", steps)
            wheel = step_latencies(page, "wheel", steps)
            page.screenshot(path=str(workdir / f"browser-{name}.png"))
        finally:
            ctx.close()
    voxels = int(np.prod(shape))
    raw = warm["raw"]
    return {"shape": shape, "voxels": voxels,
            "first_image_ms_cold": cold["first_image_ms"], "loaded_ms_cold": cold["loaded_ms"],
            "first_image_ms": warm["first_image_ms"], "loaded_ms": warm["loaded_ms"],
            "timeline_ms": {k: warm[k] for k in ("mounted_ms", "plotly_fetched_ms", "volume_fetched_ms",
                                                 "first_image_ms", "first_plotly_draw_ms", "loaded_ms")},
            "timeline_ms_cold": {k: cold[k] for k in ("mounted_ms", "plotly_fetched_ms", "volume_fetched_ms",
                                                      "first_image_ms", "first_plotly_draw_ms", "loaded_ms")},
            "volume_bytes": warm["volume_bytes"], "volume_files": warm["volume_files"],
            "volume_bytes_per_plane": round(warm["volume_bytes"] / 3), "bytes_per_voxel": round(warm["volume_bytes"] / voxels, 3),
            "raw_bytes": raw["scan"] + raw["labels"], "raw_bytes_per_voxel": round((raw["scan"] + raw["labels"]) / voxels, 3),
            "scan_dtype": raw["scan_dtype"], "labels_dtype": raw["labels_dtype"],
            "plotly_js_bytes": warm["plotly_js_bytes"], "key_ms": stats(key), "wheel_ms": stats(wheel)}


def measure_baseline(browser, name: str, scan: str, labels: str | None, steps: int, workdir: Path) -> dict:
    script = workdir / f"baseline_{name.replace(' ', '_')}.py"
    script.write_text(textwrap.dedent(BASELINE_APP))
    env = {"BENCH_ROOT": str(ROOT), "BENCH_SCAN": scan, "BENCH_LABELS": labels, "SEGLOOP_DATA_DIR": None}
    with streamlit(script, env, workdir / f"baseline-{name}.log") as base:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(180_000)
        page = context.new_page()
        frames: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(len(p))))
        try:
            page.goto(base, wait_until="domcontentloaded")
            page.locator(".st-key-chart image").first.wait_for(state="attached", timeout=240_000)
            wait_idle(page)
            page.evaluate(BASELINE_WATCH_JS)
            # Streamlit 1.67: a visually hidden <input type=range>; older versions: a div with role=slider
            thumb = page.locator(".st-key-slice input[type=range], .st-key-slice [role=slider]").first
            thumb.focus()
            k, top = thumb.evaluate("el => [Number(el.getAttribute('aria-valuenow') ?? el.value),"
                                    " Number(el.getAttribute('aria-valuemax') ?? el.max)]")
            k, n = int(k), int(top) + 1
            direction, latencies, sent = 1, [], []
            for i in range(steps + 3):  # 3 warm-up steps
                if not 0 <= k + direction < n:
                    direction = -direction
                k += direction
                before_changes = page.evaluate("() => window.__base.changes.length")
                before_bytes = sum(frames)
                page.keyboard.press("ArrowRight" if direction > 0 else "ArrowLeft")
                page.wait_for_function("(n) => window.__base.changes.length > n", arg=before_changes, timeout=60_000)
                wait_idle(page)
                b = page.evaluate("() => window.__base")
                if i >= 3:
                    latencies.append(b["changes"][before_changes] - b["keys"][-1])
                    sent.append(sum(frames) - before_bytes)
            page.screenshot(path=str(workdir / f"baseline-{name}.png"))
        finally:
            context.close()
    return {"baseline_ms": stats(latencies), "baseline_bytes_per_step": int(np.median(sent)) if sent else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="measured keyboard steps and wheel steps (each)")
    parser.add_argument("--baseline-steps", type=int, default=30, help="measured st.slider steps per scan")
    parser.add_argument("--case", default="hippocampus_001", help="crop case of the MSD folder")
    parser.add_argument("--keep", default=None, help="folder for logs and screenshots (default: a temporary one)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found (apt-get install chromium)")
    if not (MSD / "imagesTr" / f"{args.case}.nii.gz").is_file():
        raise SystemExit(f"{args.case} not found in {MSD}")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    t_start = time.monotonic()
    scenarios = {
        "crop": {"env": {"SEGLOOP_DATA_DIR": str(MSD)}, "path": f"/?case={args.case}",
                 "scan": str(MSD / "imagesTr" / f"{args.case}.nii.gz"),
                 "labels": str(MSD / "labelsTr" / f"{args.case}.nii.gz"), "what": f"{args.case} (MSD crop)"},
        "whole head": {"env": {"SEGLOOP_DATA_DIR": None}, "path": "/", "scan": str(mni152_t1_path()),
                       "labels": None, "what": "MNI152 T1 demo (no labels)"},
    }
    result: dict = {"steps": args.steps, "baseline_steps": args.baseline_steps, "plane": PLANE}
    with tempfile.TemporaryDirectory(prefix="segloop-bench-browser-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            result["chromium"] = browser.version
            try:
                for name, sc in scenarios.items():
                    print(f"[{name}] volume view…", file=sys.stderr, flush=True)
                    fig = measure_app(browser, name, sc["env"], sc["path"], args.steps, workdir)
                    print(f"[{name}] baseline st.slider + st.plotly_chart…", file=sys.stderr, flush=True)
                    fig.update(measure_baseline(browser, name, sc["scan"], sc["labels"], args.baseline_steps, workdir))
                    expected = load_scan(sc["scan"]).shape
                    assert tuple(fig["shape"]) == tuple(expected), (fig["shape"], expected)  # the scan we think it is
                    fig["scan"] = sc["what"]
                    fig["slices"] = planes.n_slices(expected, PLANE)
                    result[name.replace(" ", "_")] = fig
            finally:
                browser.close()
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                         "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    result["seconds"] = round(time.monotonic() - t_start, 1)

    rows = [
        ("scan", lambda f: f["scan"]),
        ("shape (voxels)", lambda f: f"{'×'.join(map(str, f['shape']))} ({f['voxels']:,})"),
        ("first image, cold server", lambda f: f"{f['first_image_ms_cold']:.0f} ms"),
        ("volume loaded, cold server", lambda f: f"{f['loaded_ms_cold']:.0f} ms"),
        ("first image, warm server", lambda f: f"{f['first_image_ms']:.0f} ms"),
        ("volume loaded, warm server", lambda f: f"{f['loaded_ms']:.0f} ms"),
        ("  warm: mounted / Plotly / volume / Plotly draw", lambda f: " / ".join(
            f"{f['timeline_ms'][k]:.0f}" for k in ("mounted_ms", "plotly_fetched_ms", "volume_fetched_ms",
                                                   "first_plotly_draw_ms")) + " ms"),
        ("key step median / p90", lambda f: f"{f['key_ms']['median']} / {f['key_ms']['p90']} ms (n={f['key_ms']['n']})"),
        ("wheel step median / p90", lambda f: f"{f['wheel_ms']['median']} / {f['wheel_ms']['p90']} ms (n={f['wheel_ms']['n']})"),
        ("baseline st.slider step median / p90",
         lambda f: f"{f['baseline_ms']['median']} / {f['baseline_ms']['p90']} ms (n={f['baseline_ms']['n']})"),
        ("volume payload (all planes)", lambda f: f"{f['volume_bytes']:,} B ({f['bytes_per_voxel']} B/voxel)"),
        ("  before deflate", lambda f: f"{f['raw_bytes']:,} B ({f['raw_bytes_per_voxel']} B/voxel)"),
        ("  per plane (total / 3)", lambda f: f"{f['volume_bytes_per_plane']:,} B"),
        ("baseline bytes per step", lambda f: f"{f['baseline_bytes_per_step']:,} B"),
        ("Plotly.js basic, deflated (once, cached)", lambda f: f"{f['plotly_js_bytes']:,} B"),
    ]
    names = [n for n in ("crop", "whole_head") if n in result]
    print(f"{'':42} " + " ".join(f"{n:>34}" for n in names))
    for label, fmt in rows:
        print(f"{label:42} " + " ".join(f"{fmt(result[n]):>34}" for n in names))
    m = result["machine"]
    print(f"{m['cpus']} CPUs, load average {m['load_avg_before'][0]} before / {m['load_avg_after'][0]} after; "
          f"Chromium {result['chromium']} headless; {result['seconds']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
