// Studio: paint samples of classes inside an image, train the pixel classifier in the background,
// see the class map and the uncertainty as overlays, areas per class, accuracy against a
// reference mask or validation samples; or cluster the pixels and name the clusters.
//
// The image is drawn from the server's 256-pixel tiles of a pyramid (the level matching the
// zoom), so a large image pans and zooms as a map does. Samples are kept here by blocks of
// `meta.chunk` pixels (a Uint8Array of labels and a canvas each, made where a stroke lands), and
// each block painted since the last send goes to the server as a PNG of the class colours
// (transparent: unlabelled) at its corner, so strokes on a 20,000 x 20,000 map cost what they
// cover. A map's class map (`result.tiled`) is drawn from overlay tiles as the image is, and
// refreshed while the server predicts it block by block.

import { api } from "../api.js";
import { navigate } from "../main.js";
import { clear, errorBox, h, spinner, toast } from "../ui.js";

export const title = "Studio";

const TOOLS = [["brush", "Brush (b)"], ["polygon", "Polygon (p)"], ["erase", "Erase (e)"], ["pan", "Pan (h)"]];
const POLL_MS = 250;
const MIN_SCALE = 1 / 64;
const MAX_SCALE = 16;

function ensureStyles() {
  if (!document.querySelector("link[data-studio]")) {
    document.head.append(h("link", { rel: "stylesheet", href: "/static/studio.css", dataset: { studio: "1" } }));
  }
}

const rgbOf = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

export async function mount(root, params) {
  ensureStyles();
  const info = await api("/api/studio");
  const usable = info.images.filter((image) => !image.error);
  if (!usable.length) {
    root.append(errorBox(`No image of ${info.source} can be opened: ${info.images.map((i) => `${i.name}: ${i.error}`).join("; ")}`));
    return null;
  }
  const wanted = Number(params.get("image"));
  const imageId = info.images.some((i) => i.id === wanted) ? wanted : usable[0].id;
  const loading = h("div", { class: "summary" }, spinner(), h("span", { class: "muted" }, "Opening the image…"));
  root.append(loading);
  const meta = await api(`/api/studio/images/${imageId}`);
  loading.remove();

  const { width, height } = meta;
  const state = {
    classes: info.classes,
    active: 1,
    tool: "brush",
    brush: 12,
    kind: "train",
    masks: { train: new Map(), validation: new Map() },
    scale: 1, ox: 0, oy: 0,
    opacity: 0.55,
    uncertainty: false,
    overlays: { classes: null, uncertainty: null },
    version: 0,
    result: null,
    polygon: [],
    hasReference: Boolean(meta.reference),
    timer: null,
    disposed: false,
  };

  // ---------------------------------------------------------------- sample blocks
  const CHUNK = meta.chunk;

  function colorTable() {
    const table = [[0, 0, 0, 0]];
    for (const item of state.classes) table.push([...rgbOf(item.color), 255]);
    return table;
  }

  function block(kind, column, row, create) {
    const key = `${column},${row}`;
    let found = state.masks[kind].get(key);
    if (!found && create) {
      const left = column * CHUNK, top = row * CHUNK;
      const w = Math.min(CHUNK, width - left), h = Math.min(CHUNK, height - top);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const drawn = canvas.getContext("2d");
      found = { left, top, w, h, labels: new Uint8Array(w * h), canvas, drawn, data: drawn.createImageData(w, h), dirty: false };
      state.masks[kind].set(key, found);
    }
    return found;
  }

  // Calls visit(block, x0, y0, x1, y1) for each block meeting the image rectangle [x0, x1) x [y0, y1).
  function eachBlock(kind, x0, y0, x1, y1, create, visit) {
    x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(width, x1); y1 = Math.min(height, y1);
    for (let row = Math.floor(y0 / CHUNK); row * CHUNK < y1; row++) {
      for (let column = Math.floor(x0 / CHUNK); column * CHUNK < x1; column++) {
        const found = block(kind, column, row, create);
        if (found) visit(found, Math.max(x0, found.left), Math.max(y0, found.top), Math.min(x1, found.left + found.w), Math.min(y1, found.top + found.h));
      }
    }
  }

  function repaint(kind, x0 = 0, y0 = 0, x1 = width, y1 = height) {
    const table = colorTable();
    eachBlock(kind, x0, y0, x1, y1, false, (b, bx0, by0, bx1, by1) => {
      const pixels = b.data.data;
      for (let y = by0; y < by1; y++) {
        for (let x = bx0; x < bx1; x++) {
          const i = (y - b.top) * b.w + (x - b.left);
          pixels.set(table[b.labels[i]] || table[0], 4 * i);
        }
      }
      b.drawn.putImageData(b.data, 0, 0, bx0 - b.left, by0 - b.top, bx1 - bx0, by1 - by0);
    });
  }

  function stamp(cx, cy, radius, label) {
    const x0 = Math.floor(cx - radius), x1 = Math.ceil(cx + radius + 1);
    const y0 = Math.floor(cy - radius), y1 = Math.ceil(cy + radius + 1);
    const r2 = radius * radius;
    eachBlock(state.kind, x0, y0, x1, y1, label > 0, (b, bx0, by0, bx1, by1) => {
      for (let y = by0; y < by1; y++) {
        const dy = y + 0.5 - cy;
        for (let x = bx0; x < bx1; x++) {
          const dx = x + 0.5 - cx;
          if (dx * dx + dy * dy <= r2) b.labels[(y - b.top) * b.w + (x - b.left)] = label;
        }
      }
      b.dirty = true;
    });
    return [x0, y0, x1, y1];
  }

  function strokeSegment(a, b) {
    const radius = Math.max(0.5, state.brush / 2 / state.scale);
    const label = state.tool === "erase" ? 0 : state.active;
    const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(0.5, radius / 2)));
    let box = null;
    for (let s = 0; s <= steps; s++) {
      const t = s / steps;
      const got = stamp(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), radius, label);
      box = box ? [Math.min(box[0], got[0]), Math.min(box[1], got[1]), Math.max(box[2], got[2]), Math.max(box[3], got[3])] : got;
    }
    repaint(state.kind, ...box);
  }

  function fillPolygon(points, label) {
    const ys = points.map((p) => p[1]);
    const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(height, Math.ceil(Math.max(...ys)));
    let x0 = width, x1 = 0;
    for (let y = y0; y < y1; y++) {
      const yc = y + 0.5;
      const crossings = [];
      for (let i = 0; i < points.length; i++) {
        const [ax, ay] = points[i];
        const [bx, by] = points[(i + 1) % points.length];
        if ((ay <= yc && by > yc) || (by <= yc && ay > yc)) crossings.push(ax + ((yc - ay) / (by - ay)) * (bx - ax));
      }
      crossings.sort((p, q) => p - q);
      for (let k = 0; k + 1 < crossings.length; k += 2) {
        const from = Math.max(0, Math.ceil(crossings[k] - 0.5)), to = Math.min(width - 1, Math.floor(crossings[k + 1] - 0.5));
        if (from > to) continue;
        eachBlock(state.kind, from, y, to + 1, y + 1, label > 0, (b, bx0, by, bx1) => {
          b.labels.fill(label, (by - b.top) * b.w + (bx0 - b.left), (by - b.top) * b.w + (bx1 - b.left));
          b.dirty = true;
        });
        x0 = Math.min(x0, from);
        x1 = Math.max(x1, to + 1);
      }
    }
    if (x0 < x1) repaint(state.kind, x0, y0, x1, y1);
  }

  const painted = (kind) => [...state.masks[kind].values()].some((b) => b.labels.some((v) => v));

  // The samples the server holds (sent earlier, or loaded from a file) back into the page,
  // block by block.
  async function loadSamples(kind, windows) {
    const labels = new Map(state.classes.map((item, i) => {
      const [r, g, b] = rgbOf(item.color);
      return [(r << 16) | (g << 8) | b, i + 1];
    }));
    state.masks[kind].clear();
    await Promise.all(windows.map(async ([left, top, w, h]) => {
      const image = await new Promise((resolve) => {
        const found = new Image();
        found.onload = () => resolve(found);
        found.onerror = () => resolve(null);
        found.src = `/api/studio/images/${imageId}/samples?kind=${kind}&left=${left}&top=${top}&width=${w}&height=${h}&t=${Date.now()}`;
      });
      if (!image) return;
      const target = block(kind, Math.floor(left / CHUNK), Math.floor(top / CHUNK), true);
      target.drawn.clearRect(0, 0, w, h);
      target.drawn.drawImage(image, 0, 0);
      const pixels = target.drawn.getImageData(0, 0, w, h).data;
      for (let i = 0; i < target.labels.length; i++) {
        const p = 4 * i;
        target.labels[i] = pixels[p + 3] ? labels.get((pixels[p] << 16) | (pixels[p + 1] << 8) | pixels[p + 2]) || 0 : 0;
      }
    }));
    repaint(kind);
    updateCounts();
    queueDraw();
  }

  // Each block painted since the last send, as a PNG of class colours at its corner.
  async function sendSamples(kind) {
    for (const b of state.masks[kind].values()) {
      if (!b.dirty) continue;
      const form = new FormData();
      form.append("file", await new Promise((resolve) => b.canvas.toBlob(resolve, "image/png")), `${kind}.png`);
      await api(`/api/studio/images/${imageId}/samples`, { kind, left: b.left, top: b.top }, { method: "PUT", body: form });
      b.dirty = false;
    }
  }

  // ---------------------------------------------------------------- the view
  const canvas = h("canvas", { class: "studio-canvas", tabindex: "0", "aria-label": `${meta.name}: paint samples here` });
  const wrap = h("div", { class: "studio-view" }, canvas);
  const context = canvas.getContext("2d");
  const tiles = new Map();
  let drawQueued = false;

  function queueDraw() {
    if (drawQueued || state.disposed) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  function tileImage(level, column, row) {
    const key = `${level}/${column}/${row}`;
    let image = tiles.get(key);
    if (!image) {
      image = new Image();
      image.onload = queueDraw;
      image.src = `/api/studio/images/${imageId}/tiles/${key}`;
      tiles.set(key, image);
    }
    return image;
  }

  // A map's overlay tiles: the last loaded one of each place stays drawn until its refresh
  // (asked for with the map's version and blocks done) has loaded.
  const overlayTiles = new Map();
  function overlayTile(kind, level, column, row) {
    const place = `${kind}/${level}/${column}/${row}`;
    const key = `${state.version}.${state.result?.blocks?.done ?? 0}`;
    let entry = overlayTiles.get(place);
    if (!entry) overlayTiles.set(place, (entry = { key: null, shown: null }));
    if (entry.key !== key) {
      entry.key = key;
      const image = new Image();
      image.onload = () => { if (entry.key === key) { entry.shown = image; queueDraw(); } };
      image.src = `/api/studio/images/${imageId}/overlay-tiles/${level}/${column}/${row}?kind=${kind}&version=${key}`;
    }
    return entry.shown;
  }

  // Calls visit(column, row, x, y, side) for each tile of `level` in view (x, y: its canvas corner).
  function eachTile(level, visit) {
    const { scale, ox, oy } = state;
    const span = meta.tile_size * 2 ** level;
    const columns = Math.ceil(width / span), rows = Math.ceil(height / span);
    const c0 = Math.max(0, Math.floor(ox / span)), c1 = Math.min(columns, Math.ceil((ox + canvas.width / scale) / span));
    const r0 = Math.max(0, Math.floor(oy / span)), r1 = Math.min(rows, Math.ceil((oy + canvas.height / scale) / span));
    for (let r = r0; r < r1; r++) {
      for (let c = c0; c < c1; c++) visit(c, r, (c * span - ox) * scale, (r * span - oy) * scale, span * scale);
    }
  }

  function drawTile(image, x, y, side) {
    if (!image || !image.complete || !image.naturalWidth) return;
    context.drawImage(image, x, y, (image.naturalWidth / meta.tile_size) * side, (image.naturalHeight / meta.tile_size) * side);
  }

  function draw() {
    const { scale, ox, oy } = state;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, canvas.width, canvas.height);
    const level = Math.max(0, Math.min(meta.levels - 1, Math.floor(Math.log2(1 / scale))));
    context.imageSmoothingEnabled = true;
    eachTile(level, (c, r, x, y, side) => drawTile(tileImage(level, c, r), x, y, side));
    context.imageSmoothingEnabled = false;
    const full = [(0 - ox) * scale, (0 - oy) * scale, width * scale, height * scale];
    if (state.result?.tiled) {
      context.globalAlpha = state.opacity;
      eachTile(level, (c, r, x, y, side) => drawTile(overlayTile("classes", level, c, r), x, y, side));
      if (state.uncertainty) {
        context.globalAlpha = 0.85;
        eachTile(level, (c, r, x, y, side) => drawTile(overlayTile("uncertainty", level, c, r), x, y, side));
      }
    }
    if (state.overlays.classes) {
      context.globalAlpha = state.opacity;
      context.drawImage(state.overlays.classes, ...full);
    }
    if (state.uncertainty && state.overlays.uncertainty) {
      context.globalAlpha = 0.85;
      context.drawImage(state.overlays.uncertainty, ...full);
    }
    context.globalAlpha = 0.9;
    const x1 = ox + canvas.width / scale, y1 = oy + canvas.height / scale;
    for (const kind of ["train", "validation"]) {
      for (const b of state.masks[kind].values()) {
        if (b.left >= x1 || b.top >= y1 || b.left + b.w <= ox || b.top + b.h <= oy) continue;
        context.drawImage(b.canvas, (b.left - ox) * scale, (b.top - oy) * scale, b.w * scale, b.h * scale);
      }
    }
    context.globalAlpha = 1;
    if (state.polygon.length) {
      context.strokeStyle = state.classes[state.active - 1]?.color || "#fff";
      context.lineWidth = 2;
      context.beginPath();
      state.polygon.forEach(([x, y], i) => (i ? context.lineTo : context.moveTo).call(context, (x - ox) * scale, (y - oy) * scale));
      context.stroke();
    }
    Object.assign(canvas.dataset, { scale: String(scale), ox: String(ox), oy: String(oy) });
  }

  // The canvas has as many pixels as it shows; a resize keeps the image point in the middle.
  let fitted = false;
  function resize() {
    const cw = Math.max(100, wrap.clientWidth), ch = Math.max(100, wrap.clientHeight);
    if (fitted && cw === canvas.width && ch === canvas.height) return;
    if (!fitted) {
      state.scale = Math.min(cw / width, ch / height);
      state.ox = -(cw / state.scale - width) / 2;
      state.oy = -(ch / state.scale - height) / 2;
      fitted = true;
    } else {
      state.ox += (canvas.width - cw) / 2 / state.scale;
      state.oy += (canvas.height - ch) / 2 / state.scale;
    }
    canvas.width = cw;
    canvas.height = ch;
    draw();
  }
  const observer = new ResizeObserver(resize);

  const toImage = (event) => {
    const box = canvas.getBoundingClientRect();
    return [state.ox + (event.clientX - box.left) / state.scale, state.oy + (event.clientY - box.top) / state.scale];
  };

  let drag = null;
  let spaceHeld = false;
  canvas.addEventListener("pointerdown", (event) => {
    canvas.focus();
    canvas.setPointerCapture(event.pointerId);
    const point = toImage(event);
    const pan = event.button !== 0 || state.tool === "pan" || spaceHeld;
    if (pan) {
      drag = { mode: "pan", x: event.clientX, y: event.clientY, ox: state.ox, oy: state.oy };
    } else if (state.tool === "polygon") {
      const first = state.polygon[0];
      if (first && state.polygon.length > 2 && Math.hypot(first[0] - point[0], first[1] - point[1]) * state.scale < 8) closePolygon();
      else state.polygon.push(point);
      queueDraw();
    } else {
      drag = { mode: "paint", last: point };
      strokeSegment(point, point);
      queueDraw();
    }
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.mode === "pan") {
      state.ox = drag.ox - (event.clientX - drag.x) / state.scale;
      state.oy = drag.oy - (event.clientY - drag.y) / state.scale;
    } else {
      const point = toImage(event);
      strokeSegment(drag.last, point);
      drag.last = point;
    }
    queueDraw();
  });
  const endDrag = () => { drag = null; updateCounts(); };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("dblclick", () => closePolygon());
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [ix, iy] = toImage(event);
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, state.scale * Math.exp(-event.deltaY / 400)));
    const box = canvas.getBoundingClientRect();
    state.scale = scale;
    state.ox = ix - (event.clientX - box.left) / scale;
    state.oy = iy - (event.clientY - box.top) / scale;
    queueDraw();
  }, { passive: false });

  function closePolygon() {
    if (state.polygon.length > 2) fillPolygon(state.polygon, state.active);
    state.polygon = [];
    updateCounts();
    queueDraw();
  }

  // ---------------------------------------------------------------- panels
  const classList = h("div", { class: "studio-classes", role: "radiogroup", "aria-label": "Classes" });
  const counts = h("div", { class: "muted studio-counts" });
  const progress = h("progress", { max: "1", value: "0", class: "studio-progress", hidden: true });
  const stage = h("span", { class: "muted studio-stage" });
  const trainButton = h("button", { class: "button primary", type: "button", dataset: { action: "train" } }, "Train");
  const areaTable = h("div", { class: "studio-areas" });
  const accuracyPanel = h("div", { class: "studio-accuracy" });
  const clusterNames = h("div", { class: "studio-cluster-names" });

  function renderClasses() {
    clear(classList, state.classes.map((item, index) => {
      const label = index + 1;
      const color = h("input", { type: "color", value: item.color.toLowerCase(), "aria-label": `Colour of ${item.name}` });
      const name = h("input", { type: "text", value: item.name, maxlength: "40", "aria-label": `Name of class ${label}` });
      color.addEventListener("change", () => { item.color = color.value.toUpperCase(); saveClasses(); });
      name.addEventListener("change", () => { item.name = name.value.trim() || item.name; saveClasses(); });
      const radio = h("input", { type: "radio", name: "studio-class", value: String(label), checked: label === state.active, "aria-label": `Paint ${item.name}` });
      radio.addEventListener("change", () => { state.active = label; });
      const remove = h("button", { class: "icon-button", type: "button", title: `Remove ${item.name}`, "aria-label": `Remove ${item.name}`, disabled: state.classes.length <= 2 }, "×");
      remove.addEventListener("click", () => {
        state.classes.splice(index, 1);
        for (const blocks of Object.values(state.masks)) {
          for (const b of blocks.values()) {
            const mask = b.labels;
            for (let i = 0; i < mask.length; i++) if (mask[i] === label) mask[i] = 0; else if (mask[i] > label) mask[i] -= 1;
            b.dirty = true;
          }
        }
        state.active = Math.min(state.active, state.classes.length);
        saveClasses();
      });
      return h("label", { class: "studio-class", dataset: { label: String(label) } }, radio, color, name, h("kbd", {}, label <= 9 ? String(label) : ""), remove);
    }));
  }

  async function saveClasses() {
    try {
      const answer = await api("/api/studio/classes", {}, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ classes: state.classes }) });
      state.classes = answer.classes;
    } catch (error) {
      toast(error.message, "error");
    }
    renderClasses();
    repaint("train");
    repaint("validation");
    updateCounts();
    queueDraw();
  }

  function updateCounts() {
    const tally = (blocks) => {
      const n = new Array(state.classes.length + 1).fill(0);
      for (const b of blocks.values()) for (let i = 0; i < b.labels.length; i++) n[b.labels[i]]++;
      return n;
    };
    const train = tally(state.masks.train), validation = tally(state.masks.validation);
    clear(counts, state.classes.map((item, i) => (train[i + 1] || validation[i + 1] ? h("div", {}, `${item.name}: ${train[i + 1]} px` + (validation[i + 1] ? ` (+${validation[i + 1]} validation)` : "")) : null)));
    return train;
  }

  function renderAreas(result) {
    const rows = result.areas.filter((row) => row.pixels > 0);
    const metres = rows.some((row) => row.square_metres !== undefined);
    clear(areaTable,
      h("h3", {}, result.tiled && result.preview ? `Areas (${result.blocks.done} of ${result.blocks.total} blocks predicted)` : result.preview ? "Areas (preview)" : "Areas"),
      h("table", { class: "studio-table", dataset: { version: String(result.version) } },
        h("thead", {}, h("tr", {}, h("th", {}, "class"), h("th", {}, "pixels"), h("th", {}, "%"), metres ? h("th", {}, "m²") : null)),
        h("tbody", {}, rows.map((row) => {
          const color = result.classes[row.label - 1]?.color || "#000000";
          return h("tr", { dataset: { class: row.class } },
            h("td", {}, h("span", { class: "studio-swatch", style: `background:${color}` }), row.class),
            h("td", {}, row.pixels.toLocaleString()), h("td", {}, row.percent.toFixed(1)),
            metres ? h("td", {}, Math.round(row.square_metres).toLocaleString()) : null);
        }))),
      result.seconds && Object.keys(result.seconds).length ? h("div", { class: "muted" }, Object.entries(result.seconds).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(" · ")) : null,
    );
  }

  function renderClusterNames(result) {
    if (result.kind !== "clusters") { clear(clusterNames); return; }
    const selects = result.classes.map((cluster) => {
      const select = h("select", { "aria-label": `Class of ${cluster.name}` }, h("option", { value: "" }, "(none)"), state.classes.map((item) => h("option", { value: item.name }, item.name)));
      return [cluster, select];
    });
    const apply = h("button", { class: "button", type: "button" }, "Name clusters");
    apply.addEventListener("click", async () => {
      try {
        const answer = await api(`/api/studio/images/${imageId}/cluster-names`, {}, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ names: selects.map(([, s]) => s.value) }) });
        await showResult(answer);
      } catch (error) { toast(error.message, "error"); }
    });
    clear(clusterNames, h("h3", {}, "Name or merge clusters"), selects.map(([cluster, select]) => h("div", { class: "row studio-cluster" }, h("span", { class: "studio-swatch", style: `background:${cluster.color}` }), h("span", {}, cluster.name), select)), apply);
  }

  function loadOverlay(kind, version) {
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => resolve(null);
      image.src = `/api/studio/images/${imageId}/overlay?kind=${kind}&version=${version}`;
    });
  }

  async function showResult(result) {
    state.result = result;
    state.version = result.version;
    if (result.tiled) {
      state.overlays = { classes: null, uncertainty: null };
    } else {
      const [classes, uncertainty] = await Promise.all([loadOverlay("classes", result.version), result.uncertainty ? loadOverlay("uncertainty", result.version) : null]);
      state.overlays = { classes, uncertainty };
    }
    canvas.dataset.overlay = String(result.version);
    renderAreas(result);
    renderClusterNames(result);
    queueDraw();
    if (!result.preview) refreshAccuracy();
  }

  async function refreshAccuracy(against = null) {
    const which = against || (state.hasReference ? "reference" : painted("validation") ? "validation" : null);
    if (!which || !state.result || state.result.preview) return;
    try {
      const report = await api(`/api/studio/images/${imageId}/accuracy`, { against: which });
      renderAccuracy(report, which);
    } catch (error) {
      clear(accuracyPanel, errorBox(error.message));
    }
  }

  function renderAccuracy(report, which) {
    const names = report.classes;
    clear(accuracyPanel,
      h("div", { class: "studio-oa", dataset: { accuracy: String(report.accuracy), kappa: String(report.kappa), against: which } },
        h("strong", {}, `Overall accuracy ${(100 * report.accuracy).toFixed(2)}%`), ` · kappa ${report.kappa === null ? "–" : report.kappa.toFixed(3)} · ${report.n_pixels.toLocaleString()} ${which} pixels`),
      h("table", { class: "studio-table studio-confusion" },
        h("thead", {}, h("tr", {}, h("th", {}, "reference \\ map"), names.map((n) => h("th", {}, n)), h("th", {}, "producer's"))),
        h("tbody", {},
          report.confusion_matrix.map((row, i) => h("tr", {}, h("th", {}, names[i]), row.map((v, j) => h("td", { class: i === j ? "diag" : "" }, v.toLocaleString())), h("td", {}, pct(report.producers_accuracy[names[i]])))),
          h("tr", {}, h("th", {}, "user's"), names.map((n) => h("td", {}, pct(report.users_accuracy[n]))), h("td", {})))),
    );
  }

  async function poll(job, onDone) {
    progress.hidden = false;
    let shownPreview = false;
    let polls = 0;
    const step = async () => {
      if (state.disposed) return;
      let current;
      try {
        current = await api(`/api/studio/jobs/${job.id}`);
      } catch (error) {
        stage.textContent = error.message;
        return;
      }
      progress.value = current.progress;
      stage.textContent = current.state === "failed" ? current.error : current.stage;
      if (current.state === "failed") {
        progress.hidden = true;
        toast(current.error, "error");
        trainButton.disabled = false;
        return;
      }
      if (!shownPreview && ["predicting", "done"].includes(current.stage) && job.kind === "train") {
        shownPreview = true;
        const result = await api(`/api/studio/images/${imageId}/result`).catch(() => null);
        if (result && current.state !== "done") await showResult(result);
      }
      // A map fills in block by block: its areas and overlay tiles follow, once a second.
      if (current.stage.startsWith("predicting:") && ++polls % 4 === 0) {
        const result = await api(`/api/studio/images/${imageId}/result`).catch(() => null);
        if (result) await showResult(result);
      }
      if (current.state === "stopped") {
        progress.hidden = true;
        await onDone();
        return;
      }
      if (current.state === "done") {
        progress.hidden = true;
        stage.textContent = `done in ${current.seconds.total.toFixed(1)} s` + (current.seconds.to_overlay ? ` (overlay after ${current.seconds.to_overlay.toFixed(1)} s)` : "");
        await onDone();
        return;
      }
      state.timer = setTimeout(step, POLL_MS);
    };
    await step();
  }

  async function train() {
    const painted = updateCounts();
    if (painted.slice(1).filter((n) => n > 0).length < 2) {
      toast("Paint samples of at least two classes first", "error");
      return;
    }
    trainButton.disabled = true;
    stage.textContent = "sending samples";
    try {
      await sendSamples("train");
      await sendSamples("validation");
      const job = await api(`/api/studio/images/${imageId}/train`, {}, { method: "POST" });
      await poll(job, async () => showResult(await api(`/api/studio/images/${imageId}/result`)));
    } catch (error) {
      toast(error.message, "error");
      stage.textContent = "";
    }
    trainButton.disabled = false;
  }
  trainButton.addEventListener("click", train);

  const method = h("select", { "aria-label": "Clustering method" }, h("option", { value: "kmeans" }, "k-means"), h("option", { value: "isodata" }, "ISODATA"));
  const nClusters = h("input", { type: "number", min: "2", max: "64", value: "5", "aria-label": "Clusters", class: "studio-number" });
  const clusterButton = h("button", { class: "button", type: "button" }, "Cluster");
  clusterButton.addEventListener("click", async () => {
    try {
      const job = await api(`/api/studio/images/${imageId}/cluster`, { method: method.value, n_clusters: nClusters.value }, { method: "POST" });
      await poll(job, async () => showResult(await api(`/api/studio/images/${imageId}/result`)));
    } catch (error) { toast(error.message, "error"); }
  });

  const referenceInput = h("input", { type: "file", accept: "image/png,image/tiff,image/*", "aria-label": "Reference mask" });
  referenceInput.addEventListener("change", async () => {
    const file = referenceInput.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      await api(`/api/studio/images/${imageId}/reference`, {}, { method: "PUT", body: form });
      state.hasReference = true;
      if (state.result && !state.result.preview) await refreshAccuracy("reference");
      else clear(accuracyPanel, h("span", { class: "muted" }, "Reference loaded: train to see the accuracy."));
    } catch (error) {
      clear(accuracyPanel, errorBox(error.message));
    }
  });
  const samplesInput = h("input", { type: "file", accept: "image/png,image/*", "aria-label": "Load samples" });
  samplesInput.addEventListener("change", async () => {
    const file = samplesInput.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      await api(`/api/studio/images/${imageId}/samples`, { kind: state.kind }, { method: "PUT", body: form });
      const opened = await api(`/api/studio/images/${imageId}`);
      await loadSamples(state.kind, opened.windows[state.kind]);
    } catch (error) { toast(error.message, "error"); }
    samplesInput.value = "";
  });
  const validationButton = h("button", { class: "button", type: "button" }, "Against validation samples");
  validationButton.addEventListener("click", () => refreshAccuracy("validation"));

  const opacity = h("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(state.opacity), "aria-label": "Overlay opacity" });
  opacity.addEventListener("input", () => { state.opacity = Number(opacity.value); queueDraw(); });
  const uncertaintyToggle = h("input", { type: "checkbox", "aria-label": "Show uncertainty" });
  uncertaintyToggle.addEventListener("change", () => { state.uncertainty = uncertaintyToggle.checked; queueDraw(); });

  const brush = h("input", { type: "range", min: "2", max: "80", value: String(state.brush), "aria-label": "Brush size (screen pixels)" });
  brush.addEventListener("input", () => { state.brush = Number(brush.value); });
  const tools = h("div", { class: "segmented", role: "radiogroup", "aria-label": "Tool" }, TOOLS.map(([name, label]) => {
    const button = h("button", { type: "button", dataset: { tool: name }, "aria-pressed": String(name === state.tool) }, label.split(" ")[0]);
    button.title = label;
    button.addEventListener("click", () => setTool(name));
    return button;
  }));
  function setTool(name) {
    state.tool = name;
    if (name !== "polygon") state.polygon = [];
    for (const button of tools.querySelectorAll("button")) button.setAttribute("aria-pressed", String(button.dataset.tool === name));
    queueDraw();
  }
  const kind = h("select", { "aria-label": "Samples being painted" }, h("option", { value: "train" }, "training samples"), h("option", { value: "validation" }, "validation samples"));
  kind.addEventListener("change", () => { state.kind = kind.value; });

  const pixelSize = h("input", { type: "number", min: "0", step: "any", placeholder: "unknown", value: info.pixel_size ?? "", "aria-label": "Metres per pixel", class: "studio-number" });
  pixelSize.addEventListener("change", async () => {
    try {
      await api("/api/studio/pixel-size", { metres: pixelSize.value || undefined }, { method: "PUT" });
      if (state.result) await showResult(await api(`/api/studio/images/${imageId}/result`));
    } catch (error) { toast(error.message, "error"); }
  });

  const saveButton = h("button", { class: "button", type: "button" }, "Save");
  saveButton.addEventListener("click", async () => {
    try {
      await sendSamples("train");
      await sendSamples("validation");
      const answer = await api(`/api/studio/images/${imageId}/save`, {}, { method: "POST" });
      saveButton.dataset.saved = answer.folder;
      toast(`Saved to ${answer.folder}: ${answer.files.join(", ")}`);
    } catch (error) { toast(error.message, "error"); }
  });

  const imageSelect = h("select", { "aria-label": "Image" }, info.images.map((image) => h("option", { value: String(image.id), selected: image.id === imageId, disabled: Boolean(image.error) }, image.error ? `${image.name} (${image.error})` : `${image.name} · ${image.width}×${image.height}`)));
  imageSelect.addEventListener("change", () => navigate("studio", { image: imageSelect.value }));

  const addClass = h("button", { class: "button", type: "button" }, "Add class");
  addClass.addEventListener("click", () => {
    const used = new Set(state.classes.map((c) => c.color));
    let color;
    do { color = `#${Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0").toUpperCase()}`; } while (used.has(color) || color === "#000000");
    state.classes.push({ name: `class${state.classes.length + 1}`, color });
    saveClasses();
  });

  const panel = h("aside", { class: "panel studio-panel" },
    h("label", { class: "field" }, "Image", imageSelect),
    h("section", {}, h("h3", {}, "Classes"), classList, addClass),
    h("section", {}, h("h3", {}, "Paint"), tools, h("label", { class: "field" }, "Brush size", brush), h("label", { class: "field" }, "Painting", kind), counts,
      meta.large ? h("div", { class: "muted" }, `A map of ${width.toLocaleString()}×${height.toLocaleString()} pixels: samples are sent by blocks; whole-image files (samples, reference masks) are not loaded.`)
        : h("label", { class: "field" }, "Load samples (PNG: class colours, or labels 0..K as segment train reads)", samplesInput)),
    h("section", {}, h("div", { class: "row" }, trainButton, saveButton), progress, stage),
    h("section", {}, h("h3", {}, "Overlay"), h("label", { class: "field" }, "Opacity", opacity), h("label", { class: "toggle" }, uncertaintyToggle, "Uncertainty (where to add samples)")),
    areaTable,
    h("section", {}, h("h3", {}, "Accuracy"), meta.large ? null : h("label", { class: "field" }, "Reference mask (PNG)", referenceInput), validationButton, accuracyPanel),
    h("section", {}, h("h3", {}, "Unsupervised"), h("div", { class: "row" }, method, nClusters, clusterButton), clusterNames),
    h("label", { class: "field" }, "Ground sampling distance (m per pixel)", pixelSize),
    h("div", { class: "muted" }, `Saves go to ${info.out}`),
  );
  root.append(h("div", { class: "studio-layout" }, panel, wrap));
  renderClasses();
  updateCounts();

  const keys = (event) => {
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
    if (event.key === " ") { spaceHeld = event.type === "keydown"; if (event.target === canvas) event.preventDefault(); return; }
    if (event.type !== "keydown") return;
    const tool = { b: "brush", p: "polygon", e: "erase", h: "pan" }[event.key];
    if (tool) setTool(tool);
    else if (/^[1-9]$/.test(event.key) && Number(event.key) <= state.classes.length) { state.active = Number(event.key); renderClasses(); }
    else if (event.key === "Enter" && state.polygon.length) closePolygon();
    else if (event.key === "Escape") { state.polygon = []; queueDraw(); }
  };
  document.addEventListener("keydown", keys);
  document.addEventListener("keyup", keys);
  observer.observe(wrap);
  resize();
  if (meta.samples) await loadSamples("train", meta.windows.train);
  if (meta.validation) await loadSamples("validation", meta.windows.validation);
  if (meta.result) await showResult(meta.result);
  canvas.dataset.ready = "true";

  return () => {
    state.disposed = true;
    clearTimeout(state.timer);
    document.removeEventListener("keydown", keys);
    document.removeEventListener("keyup", keys);
    observer.disconnect();
  };
}
