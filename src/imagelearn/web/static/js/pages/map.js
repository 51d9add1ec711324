// Map: every image placed by its embedding (2-D), as thumbnails; zoom (wheel, + -), pan (drag),
// select with a box or a lasso, and show the selection in the browse grid.

import { api, thumbnailUrl } from "../api.js";
import { openDetails } from "../details.js";
import { navigate } from "../main.js";
import { select } from "../state.js";
import { clear, empty, errorBox, h, spinner } from "../ui.js";

export const title = "Map";

const LOADS_AT_ONCE = 12;

/** Whether (x, y) lies inside the polygon `points` ([[x, y], ...]), by ray casting. */
export function inside(points, x, y) {
  let result = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) result = !result;
  }
  return result;
}

export async function mount(root) {
  const wrap = h("div", { class: "map-wrap" });
  const canvas = h("canvas", { tabindex: "0", "aria-label": "Map of the collection: drag to pan, wheel to zoom" });
  const count = h("span", { class: "muted" });
  const show = h("button", { class: "button primary", type: "button", disabled: true, onclick: () => { select([...selected], "map selection"); navigate("browse", { selection: "1" }); } }, "Show selection in grid");
  const tools = h("div", { class: "segmented", role: "group", "aria-label": "Tool" });
  let tool = "pan";
  const renderTools = () => clear(tools, [["pan", "Pan"], ["box", "Box select"], ["lasso", "Lasso"]].map(([name, label]) => h("button", { type: "button", "aria-pressed": String(tool === name), onclick: () => { tool = name; renderTools(); } }, label)));
  renderTools();
  const zoomButton = (label, factor, hint) => h("button", { class: "button", type: "button", title: hint, onclick: () => zoom(factor) }, label);
  root.append(h("div", { class: "map-layout" },
    h("div", { class: "map-toolbar" }, tools, zoomButton("+", 1.4, "Zoom in (+)"), zoomButton("−", 1 / 1.4, "Zoom out (−)"), h("button", { class: "button", type: "button", title: "Fit (0)", onclick: () => fit() }, "Fit"), show, h("button", { class: "button", type: "button", onclick: () => { selected.clear(); update(); } }, "Clear selection"), count),
    wrap,
  ));
  clear(wrap, h("div", { class: "empty" }, spinner(), "Placing the images…"));

  let data;
  try {
    data = await api("/api/map");
  } catch (error) {
    clear(wrap, h("div", { class: "empty" }, errorBox(error.message)));
    return;
  }
  if (!data.ids.length) {
    clear(wrap, empty("No map yet", "The map needs images with embeddings."));
    return;
  }
  clear(wrap, canvas);
  const points = data.ids.map((id, i) => ({ id, x: data.x[i], y: data.y[i], image: null, state: "none" }));
  const selected = new Set();
  const view = { scale: 1, tx: 0, ty: 0 };
  let drag = null;
  let loading = 0;
  let frame = 0;

  const size = () => [canvas.clientWidth, canvas.clientHeight];
  const thumbSide = () => Math.max(6, Math.min(160, view.scale / Math.sqrt(points.length) * 0.9));
  const screen = (p) => [p.x * view.scale + view.tx, p.y * view.scale + view.ty];

  function fit() {
    const [w, hgt] = size();
    view.scale = Math.min(w, hgt) * 0.9;
    view.tx = (w - view.scale) / 2;
    view.ty = (hgt - view.scale) / 2;
    update();
  }
  function zoom(factor, cx, cy) {
    const [w, hgt] = size();
    const x = cx ?? w / 2;
    const y = cy ?? hgt / 2;
    view.tx = x - (x - view.tx) * factor;
    view.ty = y - (y - view.ty) * factor;
    view.scale *= factor;
    update();
  }
  function update() {
    count.textContent = selected.size ? `${selected.size} selected` : `${points.length} images`;
    show.disabled = selected.size === 0;
    if (!frame) frame = requestAnimationFrame(paint);
  }
  function load(point) {
    if (point.state !== "none" || loading >= LOADS_AT_ONCE) return;
    point.state = "loading";
    loading += 1;
    const image = new Image();
    image.onload = () => { point.image = image; point.state = "done"; loading -= 1; update(); };
    image.onerror = () => { point.state = "failed"; loading -= 1; update(); };
    image.src = thumbnailUrl(point.id);
  }
  function paint() {
    frame = 0;
    const [w, hgt] = size();
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(hgt * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(hgt * ratio);
    }
    const c = canvas.getContext("2d");
    c.setTransform(ratio, 0, 0, ratio, 0, 0);
    c.clearRect(0, 0, w, hgt);
    const side = thumbSide();
    const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2563eb";
    for (const point of points) {
      const [x, y] = screen(point);
      if (x < -side || y < -side || x > w + side || y > hgt + side) continue;
      if (side >= 14) load(point);
      const isSelected = selected.has(point.id);
      if (point.image && side >= 14) {
        const ratioImage = point.image.naturalWidth / point.image.naturalHeight;
        const dw = ratioImage >= 1 ? side : side * ratioImage;
        const dh = ratioImage >= 1 ? side / ratioImage : side;
        c.drawImage(point.image, x - dw / 2, y - dh / 2, dw, dh);
        if (isSelected) {
          c.strokeStyle = accent;
          c.lineWidth = 3;
          c.strokeRect(x - dw / 2 - 1.5, y - dh / 2 - 1.5, dw + 3, dh + 3);
        }
      } else {
        c.fillStyle = isSelected ? accent : "rgba(120,130,150,0.8)";
        c.beginPath();
        c.arc(x, y, isSelected ? 4 : 3, 0, 2 * Math.PI);
        c.fill();
      }
    }
    if (drag && drag.kind === "box") {
      c.strokeStyle = accent;
      c.setLineDash([5, 4]);
      c.strokeRect(drag.x0, drag.y0, drag.x - drag.x0, drag.y - drag.y0);
      c.setLineDash([]);
    }
    if (drag && drag.kind === "lasso" && drag.path.length > 1) {
      c.strokeStyle = accent;
      c.beginPath();
      drag.path.forEach(([x, y], i) => (i ? c.lineTo(x, y) : c.moveTo(x, y)));
      c.closePath();
      c.stroke();
    }
  }
  const local = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  };
  const hit = (x, y) => {
    const side = thumbSide() / 2 + 3;
    let best = null;
    for (const point of points) {
      const [px, py] = screen(point);
      const d = Math.max(Math.abs(px - x), Math.abs(py - y));
      if (d <= side && (!best || d < best.d)) best = { point, d };
    }
    return best && best.point;
  };

  canvas.addEventListener("pointerdown", (event) => {
    const [x, y] = local(event);
    const kind = event.shiftKey ? "box" : tool;
    drag = { kind, x0: x, y0: y, x, y, path: [[x, y]], moved: false, tx: view.tx, ty: view.ty, additive: event.ctrlKey || event.metaKey };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const [x, y] = local(event);
    drag.moved = drag.moved || Math.hypot(x - drag.x0, y - drag.y0) > 3;
    drag.x = x;
    drag.y = y;
    if (drag.kind === "pan") {
      view.tx = drag.tx + (x - drag.x0);
      view.ty = drag.ty + (y - drag.y0);
    } else if (drag.kind === "lasso") drag.path.push([x, y]);
    update();
  });
  canvas.addEventListener("pointerup", () => {
    if (!drag) return;
    const done = drag;
    drag = null;
    if (!done.moved) {
      const point = hit(done.x0, done.y0);
      if (point) openDetails(point.id);
      update();
      return;
    }
    if (done.kind !== "pan") {
      if (!done.additive) selected.clear();
      const [xa, xb] = [Math.min(done.x0, done.x), Math.max(done.x0, done.x)];
      const [ya, yb] = [Math.min(done.y0, done.y), Math.max(done.y0, done.y)];
      for (const point of points) {
        const [px, py] = screen(point);
        const within = done.kind === "box" ? px >= xa && px <= xb && py >= ya && py <= yb : inside(done.path, px, py);
        if (within) selected.add(point.id);
      }
    }
    update();
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [x, y] = local(event);
    zoom(Math.exp(-event.deltaY * 0.0015), x, y);
  }, { passive: false });
  canvas.addEventListener("keydown", (event) => {
    const steps = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
    if (event.key === "+" || event.key === "=") zoom(1.4);
    else if (event.key === "-") zoom(1 / 1.4);
    else if (event.key === "0") fit();
    else if (steps[event.key]) { view.tx += steps[event.key][0]; view.ty += steps[event.key][1]; update(); }
    else return;
    event.preventDefault();
  });
  const observer = new ResizeObserver(() => update());
  observer.observe(canvas);
  fit();
  return () => observer.disconnect();
}
