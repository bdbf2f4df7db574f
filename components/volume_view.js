// SegLoop volume view: three planes of a scan and its labels, stepped in the browser.
//
// Why: a Streamlit round trip per slice step costs ~250 ms; a desktop viewer steps within a frame.
// The scan and label map arrive once (deflate-compressed voxel arrays served by Streamlit's media
// endpoint, see segloop/display/volume_payload.py); slices are cut, windowed and coloured here and
// drawn by Plotly as layout images, so a step is one Plotly.relayout and no server work.
//
// The server hears about: the view (slices, crosshair; debounced state "view"), edits made on the
// slice shown (trigger "edit": box/lasso outline or clicked point in on-screen mm, or a brush
// stroke in pixels, always with the plane and slice they were drawn on) and keyboard commands
// (trigger "command": undo, redo, tool, label).

const G = (window.__segloopVV = window.__segloopVV || {
  volumes: new Map(), // url -> Promise<TypedArray>
  plotly: null,
  timings: [], // {plane, how, ms}: input event -> new slice drawn (next animation frame)
  builds: 0,
  marks: {},
});
const MAX_CACHED = 6;
// A 1x1 transparent PNG: an overlay with nothing to show (an empty source would make Plotly drop the image).
const EMPTY = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==";
const DEBOUNCE_MS = 600;
const DRAG_PX = 4;

// Plotly.js arrives deflated (1.4 MB instead of 4.8: Streamlit's media endpoint does not gzip) and is
// kept in the browser's Cache Storage under its content-addressed URL, so a reload or a second tab
// does not fetch it again. Where Cache Storage is unavailable (plain http to another host) it is fetched.
async function inflate(response) {
  return new Response(response.body.pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
}

async function fetchCached(url) {
  let cache = null;
  try { cache = await caches.open("segloop-v1"); } catch (err) { cache = null; }
  let r = cache ? await cache.match(url) : null;
  if (!r) {
    r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    if (cache) { try { await cache.put(url, r.clone()); } catch (err) { /* quota: fine without */ } }
  }
  return r;
}

function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!G.plotly) {
    G.plotly = fetchCached(url).then(inflate).then((buf) => new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = URL.createObjectURL(new Blob([buf], { type: "text/javascript" }));
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => reject(new Error("could not load Plotly"));
      document.head.appendChild(s);
    }));
    G.plotly.catch(() => { G.plotly = null; });
  }
  return G.plotly;
}

function loadVolume(spec) {
  let p = G.volumes.get(spec.url);
  if (!p) {
    p = fetch(spec.url)
      .then((r) => {
        if (!r.ok) throw new Error(`volume ${r.status}`);
        return inflate(r);
      })
      .then((buf) => (spec.dtype === "uint16" ? new Uint16Array(buf) : new Uint8Array(buf)));
    p.catch(() => G.volumes.delete(spec.url));
    G.volumes.set(spec.url, p);
    while (G.volumes.size > MAX_CACHED) G.volumes.delete(G.volumes.keys().next().value);
  }
  return p;
}

function hexRGB(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// Grey level of every code under a window, as segloop.display.windowing.apply_window computes it.
function windowLUT(dtype, slope, intercept, center, width) {
  const n = dtype === "uint16" ? 65536 : 256;
  const lut = new Uint8Array(n);
  const w = width > 0 ? width : 1e-6;
  const lo = center - w / 2;
  const scale = 255 / w;
  for (let code = 0; code < n; code++) {
    let g = ((code * slope + intercept) - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    lut[code] = Math.floor(g + 0.5);
  }
  return lut;
}

class Plane {
  constructor(view, name, cell) {
    this.view = view;
    this.name = name;
    this.cell = cell;
    this.title = cell.querySelector(".vv-title");
    this.plot = cell.querySelector(".vv-plot");
    this.slider = cell.querySelector("input[type=range]");
    this.status = cell.querySelector(".vv-status");
    this.canvas = document.createElement("canvas");
    this.lcanvas = document.createElement("canvas");
    this.ucanvas = document.createElement("canvas");
    this.ready = false;
    this.pending = null;
    this.drawing = false;
    this.stroke = null;
  }
}

class VolumeView {
  constructor(root) {
    this.root = root;
    this.planes = new Map();
    this.data = null;
    this.image = null; // codes
    this.labels = null; // local copy (brush previews write here until the server's version arrives)
    this.extra = null;
    this.urls = {};
    this.slices = {};
    this.slicesRev = null;
    this.crosshair = null;
    this.lut = null;
    this.lutKey = "";
    this.colours = null;
    this.colourKey = "";
    this.debounce = null;
    this.layoutKey = "";
    this.hoverPlane = null;
    // Plotly covers the page with a "dragcover" on mousedown, so a pointerup lands there, not on the
    // plot: the release of a press that started in a plane is heard on the window.
    const release = (ev) => {
      if (!this.root.isConnected) { window.removeEventListener("pointerup", release, true); return; } // page left
      for (const pl of this.planes.values()) if (pl.down || pl.stroke || pl.wl) this.onPointerUp(pl, ev);
    };
    window.addEventListener("pointerup", release, true);
    G.builds += 1;
  }

  setCallbacks(setStateValue, setTriggerValue) {
    this.setStateValue = setStateValue;
    this.setTriggerValue = setTriggerValue;
  }

  geometry(plane) { return this.data.geometry[plane]; }

  async update(data) {
    this.data = data;
    G.marks.mounted ??= performance.now(); // milestones since navigation start, for bench/browser.py
    if (!this.Plotly) this.preview(data);
    for (const spec of [data.image, data.labels, data.extra]) if (spec) loadVolume(spec); // fetch while Plotly loads
    const Plotly = await loadPlotly(data.plotly_url);
    G.marks.plotly ??= performance.now();
    this.Plotly = Plotly;
    if (this.data !== data) return; // a newer update arrived while Plotly loaded
    const key = JSON.stringify([data.planes, data.height, data.image.shape]);
    if (key !== this.layoutKey) this.build(key);
    if (data.slices_rev !== this.slicesRev) {
      this.slicesRev = data.slices_rev;
      for (const p of Object.keys(data.slices)) this.slices[p] = data.slices[p];
      if (data.crosshair) this.crosshair = data.crosshair.slice();
    }
    for (const p of data.planes) {
      const g = this.geometry(p);
      this.slices[p] = Math.max(0, Math.min(g.n - 1, this.slices[p] ?? Math.floor(g.n / 2)));
    }
    const serverWindow = JSON.stringify(data.window);
    if (serverWindow !== this.serverWindow) { // the sidebar changed it (or it echoes a drag): adopt
      this.serverWindow = serverWindow;
      this.window = data.window.slice();
      this.windowMoved = false;
    }
    this.updateLUTs();
    this.loadAll();
    for (const pl of this.planes.values()) this.setDragmode(pl);
    this.drawAll("data");
  }

  // Before Plotly.js is ready (the first visit: ~1.4 MB to fetch and 4.8 MB to parse): the slices the
  // server rendered, as still images at the view's size and aspect, so the first image never waits.
  preview(data) {
    if (this.layoutKey || this.previewed || !data.first || !Object.keys(data.first).length) return;
    this.previewed = true;
    this.root.style.setProperty("--vv-cols", String(data.planes.length));
    this.root.innerHTML = "";
    for (const name of data.planes) {
      const f = data.first[name], g = data.geometry[name], [rowMM, colMM] = data.pixel_mm[name];
      const cell = document.createElement("div");
      cell.className = "vv-cell vv-preview";
      cell.dataset.plane = name;
      cell.innerHTML = `<div class="vv-head"><span class="vv-title">${name[0].toUpperCase()}${name.slice(1)} ` +
        `${f ? f.index + 1 : "–"} / ${g.n}</span></div><div class="vv-plot vv-still" style="height:${data.height}px"></div>`;
      this.root.appendChild(cell);
      if (!f) continue;
      const box = cell.querySelector(".vv-still");
      const scale = Math.min(box.clientWidth / (g.cols * colMM), data.height / (g.rows * rowMM));
      const stack = document.createElement("div");
      stack.className = "vv-stack";
      stack.style.width = `${g.cols * colMM * scale}px`;
      stack.style.height = `${g.rows * rowMM * scale}px`;
      for (const [src, opacity] of [[f.grey, 1], [f.labels, data.style.opacity]]) {
        if (!src) continue;
        const img = new Image();
        img.src = src;
        img.style.opacity = String(opacity);
        stack.appendChild(img);
      }
      box.appendChild(stack);
      stack.firstChild.decode().then(() => {
        G.marks.firstImage ??= performance.now();
        cell.dataset.preview = String(f.index);
      }).catch(() => {});
    }
  }

  build(key) {
    this.layoutKey = key;
    for (const pl of this.planes.values()) this.Plotly.purge(pl.plot);
    this.planes.clear();
    this.root.innerHTML = "";
    const d = this.data;
    this.root.style.setProperty("--vv-cols", String(d.planes.length));
    for (const name of d.planes) {
      const g = this.geometry(name);
      const cell = document.createElement("div");
      cell.className = "vv-cell";
      cell.tabIndex = 0;
      cell.dataset.plane = name;
      cell.innerHTML =
        `<div class="vv-head"><span class="vv-title"></span></div>` +
        `<div class="vv-plot" style="height:${d.height}px"></div>` +
        `<input type="range" min="0" max="${g.n - 1}" step="1" aria-label="${name} slice">` +
        `<div class="vv-status">&nbsp;</div>`;
      this.root.appendChild(cell);
      const pl = new Plane(this, name, cell);
      this.planes.set(name, pl);
      this.newPlot(pl);
      this.listen(pl);
    }
  }

  newPlot(pl) {
    const d = this.data, g = this.geometry(pl.name);
    const [rowMM, colMM] = d.pixel_mm[pl.name];
    const [L, R, T, B] = d.edges[pl.name];
    // Plotly keys layout images by their place, so images with equal geometry in one layer collapse
    // into one: the scan goes below the traces, the overlays above, the last one nudged by a nanometre.
    const img = (name, opacity, layer, nudge) => ({
      source: EMPTY, visible: true, xref: "x", yref: "y", x: -colMM / 2 + nudge, y: -rowMM / 2,
      sizex: g.cols * colMM, sizey: g.rows * rowMM, xanchor: "left", yanchor: "top", sizing: "stretch",
      layer, opacity, name,
    });
    const edge = (text, x, y, xanchor, yanchor) => ({
      text, x, y, xanchor, yanchor, xref: "x domain", yref: "y domain", showarrow: false,
      bgcolor: "rgba(0,0,0,0.55)", borderpad: 1, font: { color: "#ffd60a", size: 14, weight: "bold" },
    });
    const axis = { showgrid: false, zeroline: false, showticklabels: false, ticks: "", showline: false };
    const layout = {
      margin: { l: 0, r: 0, t: 0, b: 0 }, height: d.height, dragmode: this.dragmode(), plot_bgcolor: "black",
      paper_bgcolor: "rgba(0,0,0,0)", showlegend: false, hovermode: false,
      xaxis: { ...axis, range: [-colMM / 2, (g.cols - 0.5) * colMM], constrain: "domain" },
      yaxis: { ...axis, range: [(g.rows - 0.5) * rowMM, -rowMM / 2], scaleanchor: "x", scaleratio: 1, constrain: "domain" },
      images: [img("scan", 1, "below", 0), img("labels", d.style.opacity, "above", 0), img("uncertainty", 0.55, "above", 1e-6)],
      annotations: [edge(L, 0.01, 0.5, "left", "middle"), edge(R, 0.99, 0.5, "right", "middle"),
                    edge(T, 0.5, 0.99, "center", "top"), edge(B, 0.5, 0.01, "center", "bottom")],
      shapes: [],
    };
    // Corner points only: Plotly needs a trace for axes and for box/lasso selections to report outlines.
    const trace = {
      type: "scatter", mode: "markers", x: [0, (g.cols - 1) * colMM], y: [0, (g.rows - 1) * rowMM],
      marker: { opacity: 0, size: 1 }, hoverinfo: "skip",
    };
    const config = {
      displaylogo: false, scrollZoom: false, responsive: true, doubleClick: "reset",
      modeBarButtonsToRemove: ["toImage", "select2d", "lasso2d", "autoScale2d", "zoom2d"],
    };
    this.Plotly.newPlot(pl.plot, [trace], layout, config).then(() => {
      pl.ready = true;
      pl.plot.on("plotly_selected", (ev) => this.onSelected(pl, ev));
      this.setDragmode(pl); // the tool may have changed while Plotly was drawing
      this.draw(pl, "build");
    });
  }

  listen(pl) {
    const { cell, plot, slider } = pl;
    slider.addEventListener("input", (ev) => this.step(pl, Number(slider.value) - this.slices[pl.name], ev, "slider"));
    cell.addEventListener("pointerenter", () => {
      this.hoverPlane = pl;
      if (!cell.contains(document.activeElement)) cell.focus({ preventScroll: true });
    });
    cell.addEventListener("keydown", (ev) => this.onKey(pl, ev));
    plot.addEventListener("wheel", (ev) => this.onWheel(pl, ev), { passive: false });
    plot.addEventListener("pointerdown", (ev) => this.onPointerDown(pl, ev), true);
    plot.addEventListener("pointermove", (ev) => this.onPointerMove(pl, ev), true);
    plot.addEventListener("pointerleave", () => { pl.lastPoint = null; pl.status.innerHTML = "&nbsp;"; });
    plot.addEventListener("contextmenu", (ev) => ev.preventDefault()); // the right button sets the window
  }

  // ------------------------------------------------------------------ data

  loadAll() {
    const d = this.data;
    const want = { image: d.image, labels: d.labels, extra: d.extra };
    for (const [what, spec] of Object.entries(want)) {
      const url = spec ? spec.url : null;
      if (url === this.urls[what]) continue;
      this.urls[what] = url;
      if (!spec) { this[what] = null; this.drawAll("data"); continue; }
      loadVolume(spec).then((arr) => {
        if (this.urls[what] !== url) return;
        this[what] = what === "labels" ? arr.slice() : arr; // labels: a copy the brush preview may write to
        this.drawAll("data");
      }).catch((err) => { this.root.dataset.error = String(err); });
    }
  }

  updateLUTs() {
    const d = this.data;
    const lutKey = JSON.stringify([d.image.dtype, d.image.slope, d.image.intercept, this.window]);
    if (lutKey !== this.lutKey) {
      this.lutKey = lutKey;
      this.lut = windowLUT(d.image.dtype, d.image.slope, d.image.intercept, this.window[0], this.window[1]);
    }
    const colourKey = JSON.stringify(d.style);
    if (colourKey !== this.colourKey) {
      this.colourKey = colourKey;
      const n = d.labels && d.labels.dtype === "uint16" ? 65536 : 256;
      const colours = new Uint32Array(n); // 0 = transparent
      const hidden = new Set(d.style.hidden);
      for (let v = 1; v < n; v++) {
        if (hidden.has(v)) continue;
        const hex = d.style.colors[String(v)] || d.style.palette[(v - 1) % d.style.palette.length];
        const [r, g, b] = hexRGB(hex);
        colours[v] = (255 << 24) | (b << 16) | (g << 8) | r;
      }
      this.colours = colours;
    }
  }

  // ------------------------------------------------------------------ drawing

  offset(g, k, r, c) { return g.origin + k * g.slice + r * g.row_step + c * g.col_step; }

  voxelOf(off) {
    const [, Y, Z] = this.data.image.shape;
    return [Math.floor(off / (Y * Z)), Math.floor(off / Z) % Y, off % Z];
  }

  // (k, row, col) of a voxel in a plane: inverse of `offset`.
  pixelOf(plane, v) {
    const g = this.geometry(plane);
    const [, Y, Z] = this.data.image.shape;
    const strides = [Y * Z, Z, 1];
    const o = this.voxelOf(g.origin);
    const along = (step) => {
      if (step === 0) return 0;
      const a = strides.indexOf(Math.abs(step));
      return Math.sign(step) * (v[a] - o[a]);
    };
    return [v[g.axis], along(g.row_step), along(g.col_step)];
  }

  sliceURL(canvas, g, fill) {
    canvas.width = g.cols;
    canvas.height = g.rows;
    const ctx = canvas.getContext("2d");
    const im = ctx.createImageData(g.cols, g.rows);
    const any = fill(new Uint32Array(im.data.buffer));
    if (!any) return EMPTY;
    ctx.putImageData(im, 0, 0);
    return canvas.toDataURL("image/png");
  }

  greyURL(pl, k) {
    const g = this.geometry(pl.name), vol = this.image, lut = this.lut;
    return this.sliceURL(pl.canvas, g, (px) => {
      let p = 0;
      for (let r = 0; r < g.rows; r++) {
        let o = this.offset(g, k, r, 0);
        for (let c = 0; c < g.cols; c++, o += g.col_step) {
          const v = lut[vol[o]];
          px[p++] = 0xff000000 | (v << 16) | (v << 8) | v;
        }
      }
      return true;
    });
  }

  labelURL(pl, k) {
    const d = this.data, g = this.geometry(pl.name), lab = this.labels, col = this.colours;
    if (!lab || !d.style.visible) return EMPTY;
    const contour = d.style.contour;
    return this.sliceURL(pl.lcanvas, g, (px) => {
      let any = false, p = 0;
      for (let r = 0; r < g.rows; r++) {
        let o = this.offset(g, k, r, 0);
        for (let c = 0; c < g.cols; c++, o += g.col_step, p++) {
          const v = lab[o];
          if (v === 0 || col[v] === 0) continue;
          if (contour) {
            // Edge of a region: a 4-neighbour inside the slice holds another value (render.boundary_mask).
            const edge = (r > 0 && lab[o - g.row_step] !== v) || (r < g.rows - 1 && lab[o + g.row_step] !== v) ||
                         (c > 0 && lab[o - g.col_step] !== v) || (c < g.cols - 1 && lab[o + g.col_step] !== v);
            if (!edge) continue;
          }
          px[p] = col[v];
          any = true;
        }
      }
      return any;
    });
  }

  extraURL(pl, k) {
    const d = this.data, g = this.geometry(pl.name), lev = this.extra;
    if (!lev || !d.extra) return EMPTY;
    const pal = d.extra.palette.map(([r, gg, b]) => (255 << 24) | (b << 16) | (gg << 8) | r);
    return this.sliceURL(pl.ucanvas, g, (px) => {
      let any = false, p = 0;
      for (let r = 0; r < g.rows; r++) {
        let o = this.offset(g, k, r, 0);
        for (let c = 0; c < g.cols; c++, o += g.col_step, p++) {
          const v = lev[o];
          if (v > 0) { px[p] = pal[Math.min(v, pal.length) - 1]; any = true; }
        }
      }
      return any;
    });
  }

  shapes(pl, k) {
    const d = this.data, [rowMM, colMM] = d.pixel_mm[pl.name], g = this.geometry(pl.name);
    const out = [];
    for (const [xs, ys] of ((d.outlines || {})[pl.name] || {})[String(k)] || []) {
      const path = xs.map((x, i) => `${i ? "L" : "M"}${x},${ys[i]}`).join(" ") + " Z";
      out.push({ type: "path", path, line: { color: "#ffd60a", width: 1.5, dash: "dash" }, layer: "above" });
    }
    if (this.crosshair && d.show_crosshair) {
      const [, r, c] = this.pixelOf(pl.name, this.crosshair);
      const line = { color: "rgba(52,199,89,0.8)", width: 1 };
      out.push({ type: "line", x0: c * colMM, x1: c * colMM, y0: -rowMM / 2, y1: (g.rows - 0.5) * rowMM, line, layer: "above" });
      out.push({ type: "line", x0: -colMM / 2, x1: (g.cols - 0.5) * colMM, y0: r * rowMM, y1: r * rowMM, line, layer: "above" });
    }
    return out;
  }

  drawAll(how, t0) { for (const pl of this.planes.values()) this.draw(pl, how, t0); }

  // Draw the plane's current slice. Steps that arrive while Plotly is drawing coalesce into one.
  draw(pl, how, t0) {
    if (!pl.ready) return;
    if (pl.drawing) { pl.pending = { how, t0: pl.pending ? pl.pending.t0 : t0 }; return; }
    const d = this.data, k = this.slices[pl.name], g = this.geometry(pl.name);
    pl.slider.value = String(k);
    pl.title.textContent = `${pl.name[0].toUpperCase()}${pl.name.slice(1)} ${k + 1} / ${g.n}`;
    pl.cell.dataset.slice = String(k);
    let grey, lab, extra = EMPTY;
    if (this.image) {
      grey = this.greyURL(pl, k);
      lab = this.labelURL(pl, k);
      extra = this.extraURL(pl, k);
      pl.cell.dataset.loaded = "1";
    } else {
      const first = (d.first || {})[pl.name];
      if (!first || first.index !== k) return; // nothing to show for this slice until the volume arrives
      grey = first.grey;
      lab = first.labels || EMPTY;
    }
    pl.drawing = true;
    const update = {
      "images[0].source": grey, "images[1].source": lab, "images[1].opacity": d.style.opacity,
      "images[2].source": extra, shapes: this.shapes(pl, k),
    };
    this.Plotly.relayout(pl.plot, update).then(() => new Promise(requestAnimationFrame)).then(() => {
      pl.drawing = false;
      pl.cell.dataset.drawn = String(k);
      if (pl.lastPoint) this.showStatus(pl, pl.lastPoint); // the read-out follows the slice under a still pointer
      G.marks.firstDrawn ??= performance.now();
      if (t0 !== undefined) {
        G.timings.push({ plane: pl.name, how, ms: performance.now() - t0 });
        if (G.timings.length > 2000) G.timings.shift();
      }
      if (pl.pending) { const p = pl.pending; pl.pending = null; this.draw(pl, p.how, p.t0); }
    });
  }

  // ------------------------------------------------------------------ navigation

  step(pl, delta, ev, how) {
    const g = this.geometry(pl.name);
    const k = Math.max(0, Math.min(g.n - 1, this.slices[pl.name] + delta));
    if (k === this.slices[pl.name]) { pl.slider.value = String(k); return; }
    this.slices[pl.name] = k;
    if (this.crosshair) this.crosshair[g.axis] = k;
    const t0 = ev && ev.timeStamp ? ev.timeStamp : performance.now();
    this.draw(pl, how, t0);
    if (this.crosshair) for (const other of this.planes.values()) if (other !== pl) this.draw(other, "crosshair");
    this.report();
  }

  moveTo(voxel, except) {
    this.crosshair = voxel.slice();
    for (const pl of this.planes.values()) {
      const [k] = this.pixelOf(pl.name, voxel);
      this.slices[pl.name] = k;
      this.draw(pl, pl === except ? "crosshair" : "linked", performance.now());
    }
    this.report();
  }

  report() {
    clearTimeout(this.debounce);
    const scan = this.data ? this.data.scan : null; // the scan these slices are of, even if the page moves on
    this.debounce = setTimeout(() => {
      const view = { scan, slices: { ...this.slices }, crosshair: this.crosshair };
      if (this.windowMoved) view.window = this.window.slice();
      if (this.setStateValue) this.setStateValue("view", view);
    }, DEBOUNCE_MS);
  }

  onKey(pl, ev) {
    const target = this.hoverPlane || pl;
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && (ev.key === "z" || ev.key === "Z")) {
      this.command({ action: ev.shiftKey ? "redo" : "undo" });
    } else if (mod && (ev.key === "y" || ev.key === "Y")) {
      this.command({ action: "redo" });
    } else if (mod || ev.altKey) {
      return;
    } else if (ev.key === "ArrowUp" || ev.key === "ArrowRight") {
      if (ev.target === pl.slider) return; // the slider's own keys move it (its input event steps)
      this.step(target, +1, ev, "key");
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowLeft") {
      if (ev.target === pl.slider) return;
      this.step(target, -1, ev, "key");
    } else if (ev.key === "PageUp") {
      this.step(target, +5, ev, "key");
    } else if (ev.key === "PageDown") {
      this.step(target, -5, ev, "key");
    } else if (this.data.editable && this.data.shortcuts && this.data.shortcuts[ev.key.toLowerCase()]) {
      this.command(this.data.shortcuts[ev.key.toLowerCase()]);
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
  }

  command(cmd) {
    if (this.setTriggerValue) this.setTriggerValue("command", { ...cmd, scan: this.data.scan, id: `${Date.now()}-${Math.random()}` });
  }

  onWheel(pl, ev) {
    ev.preventDefault();
    if (ev.ctrlKey || ev.metaKey) { this.zoom(pl, ev); return; }
    // Trackpads send many small deltas: one step per ~50 px, at least one per event burst.
    pl.wheel = (pl.wheel || 0) + (ev.deltaMode === 1 ? ev.deltaY * 40 : ev.deltaY);
    if (Math.abs(pl.wheel) < 50 && Math.abs(ev.deltaY) < 50 && ev.deltaMode === 0) return;
    const delta = pl.wheel > 0 ? -1 : 1; // wheel away from the user: next slice up
    pl.wheel = 0;
    this.step(pl, delta, ev, "wheel");
  }

  zoom(pl, ev) {
    const full = pl.plot._fullLayout;
    const xa = full.xaxis, ya = full.yaxis;
    const box = pl.plot.querySelector(".nsewdrag").getBoundingClientRect();
    const x = xa.p2d(ev.clientX - box.left), y = ya.p2d(ev.clientY - box.top);
    const f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    const scale = (r, c) => [c + (r[0] - c) * f, c + (r[1] - c) * f];
    this.Plotly.relayout(pl.plot, { "xaxis.range": scale(xa.range, x), "yaxis.range": scale(ya.range, y) });
  }

  // ------------------------------------------------------------------ pointer: crosshair, clicks, brush

  pointAt(pl, ev) {
    const full = pl.plot._fullLayout;
    const drag = pl.plot.querySelector(".nsewdrag");
    if (!full || !drag) return null;
    const box = drag.getBoundingClientRect();
    const x = full.xaxis.p2d(ev.clientX - box.left), y = full.yaxis.p2d(ev.clientY - box.top);
    const [rowMM, colMM] = this.data.pixel_mm[pl.name];
    return { x, y, r: y / rowMM, c: x / colMM };
  }

  inside(pl, p) {
    const g = this.geometry(pl.name);
    const r = Math.round(p.r), c = Math.round(p.c);
    return r >= 0 && r < g.rows && c >= 0 && c < g.cols ? [r, c] : null;
  }

  tool() { return this.data.editable ? this.data.tool : "pan"; }

  onPointerDown(pl, ev) {
    if (ev.button === 2) { // right-drag: window/level, as in desktop viewers (across = width, up/down = level)
      ev.stopPropagation();
      ev.preventDefault();
      pl.plot.setPointerCapture(ev.pointerId);
      pl.wl = { x: ev.clientX, y: ev.clientY, c: this.window[0], w: this.window[1] };
      return;
    }
    if (ev.button !== 0) return;
    pl.down = { x: ev.clientX, y: ev.clientY, t: performance.now(), shift: ev.shiftKey };
    if (this.tool() === "brush" && !ev.shiftKey) {
      const p = this.pointAt(pl, ev);
      if (!p) return;
      ev.stopPropagation();
      ev.preventDefault();
      pl.plot.setPointerCapture(ev.pointerId);
      pl.stroke = { index: this.slices[pl.name], points: [[p.r, p.c]] };
      this.stamp(pl, p.r, p.c);
    }
  }

  onPointerMove(pl, ev) {
    if (pl.wl) {
      ev.stopPropagation();
      const { x, y, c, w } = pl.wl;
      this.window = [c - (ev.clientY - y) * w / 250, Math.max(w * Math.exp((ev.clientX - x) / 250), 1e-6)];
      this.windowMoved = true;
      if (!this.wlQueued) {
        this.wlQueued = true;
        requestAnimationFrame(() => { this.wlQueued = false; this.updateLUTs(); this.drawAll("window", performance.now()); });
      }
      return;
    }
    const p = this.pointAt(pl, ev);
    pl.lastPoint = p;
    if (p) this.showStatus(pl, p);
    if (pl.stroke && p) {
      ev.stopPropagation();
      const last = pl.stroke.points[pl.stroke.points.length - 1];
      // Preview along the segment at half-pixel steps, as operations.stroke_mask paints it.
      const n = Math.max(1, Math.ceil(2 * Math.hypot(p.r - last[0], p.c - last[1])));
      for (let i = 1; i <= n; i++) this.stamp(pl, last[0] + (p.r - last[0]) * i / n, last[1] + (p.c - last[1]) * i / n);
      pl.stroke.points.push([p.r, p.c]);
    }
  }

  onPointerUp(pl, ev) {
    if (pl.wl) { pl.wl = null; this.report(); return; }
    const down = pl.down;
    pl.down = null;
    if (pl.stroke) {
      const s = pl.stroke;
      pl.stroke = null;
      ev.stopPropagation();
      this.edit({ tool: "brush", plane: pl.name, index: s.index, points: s.points, radius: this.data.brush, value: this.data.value });
      return;
    }
    if (!down || Math.hypot(ev.clientX - down.x, ev.clientY - down.y) > DRAG_PX) return;
    const p = this.pointAt(pl, ev);
    const px = p && this.inside(pl, p);
    if (!px) return;
    const tool = this.tool();
    if (down.shift || tool === "pan" || tool === "crosshair") {
      const g = this.geometry(pl.name);
      this.moveTo(this.voxelOf(this.offset(g, this.slices[pl.name], px[0], px[1])), pl);
    } else if (tool === "flood fill" || tool === "delete component") {
      this.edit({ tool, plane: pl.name, index: this.slices[pl.name], selection: { points: [{ x: p.x, y: p.y }] } });
    }
  }

  stamp(pl, r0, c0) {
    if (!this.labels) return;
    const g = this.geometry(pl.name), k = pl.stroke.index, rad = this.data.brush, v = this.data.value;
    for (let r = Math.max(0, Math.ceil(r0 - rad)); r <= Math.min(g.rows - 1, Math.floor(r0 + rad)); r++) {
      for (let c = Math.max(0, Math.ceil(c0 - rad)); c <= Math.min(g.cols - 1, Math.floor(c0 + rad)); c++) {
        if ((r - r0) ** 2 + (c - c0) ** 2 < rad * rad) this.labels[this.offset(g, k, r, c)] = v;
      }
    }
    if (!pl.previewQueued) {
      pl.previewQueued = true;
      requestAnimationFrame(() => { pl.previewQueued = false; this.draw(pl, "brush"); });
    }
  }

  onSelected(pl, ev) {
    const tool = this.tool();
    if (!ev || (tool !== "box" && tool !== "lasso")) return;
    let selection = null;
    if (ev.range && ev.range.x) selection = { box: [{ x: ev.range.x, y: ev.range.y }] };
    else if (ev.lassoPoints && ev.lassoPoints.x) selection = { lasso: [{ x: ev.lassoPoints.x, y: ev.lassoPoints.y }] };
    if (!selection) return;
    this.edit({ tool, plane: pl.name, index: this.slices[pl.name], selection });
    this.Plotly.relayout(pl.plot, { selections: [] });
  }

  edit(e) {
    // The label is the one the page shows now; the plane and slice are those the edit was drawn on, and the
    // scan the one on screen (the server refuses an edit whose scan is no longer current).
    if (this.setTriggerValue) this.setTriggerValue("edit", { value: this.data.value, ...e, scan: this.data.scan, id: `${Date.now()}-${Math.random()}` });
  }

  dragmode() { return { box: "select", lasso: "lasso", brush: false }[this.tool()] ?? "pan"; }

  setDragmode(pl) {
    if (!pl.ready) return;
    const mode = this.dragmode();
    if (pl.plot._fullLayout && pl.plot._fullLayout.dragmode !== mode) this.Plotly.relayout(pl.plot, { dragmode: mode });
  }

  showStatus(pl, p) {
    const px = this.inside(pl, p);
    if (!px || !this.image) { pl.status.innerHTML = "&nbsp;"; return; }
    const d = this.data, g = this.geometry(pl.name);
    const off = this.offset(g, this.slices[pl.name], px[0], px[1]);
    const v = this.voxelOf(off);
    const value = this.image[off] * d.image.slope + d.image.intercept;
    const A = d.affine;
    const mm = [0, 1, 2].map((i) => A[i][0] * v[0] + A[i][1] * v[1] + A[i][2] * v[2] + A[i][3]);
    const lab = this.labels ? this.labels[off] : 0;
    const name = lab ? (d.names[String(lab)] || `label ${lab}`) : "";
    pl.status.textContent = `voxel (${v.join(", ")}) · ${mm.map((m) => m.toFixed(1)).join(", ")} mm · ` +
      `${Number(value.toPrecision(5))}${name ? " · " + name : ""}`;
  }
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const host = parentElement.querySelector(".segloop-vv") || parentElement;
  if (!host.__vv) host.__vv = new VolumeView(host);
  host.__vv.setCallbacks(setStateValue, setTriggerValue);
  host.__vv.update(data);
}
