// The match view: query and match side by side, inlier correspondences as lines, and the query
// region's outline mapped onto the match by the estimated homography. Drawn from the search result.

import { fileUrl } from "./api.js";
import { clear, formatScore, h, openDialog } from "./ui.js";

const HEIGHT = 520; // canvas height of both images (CSS pixels, before fitting the dialog)
const GAP = 16;
const LINE = "rgba(74, 222, 128, 0.85)";
const OUTLINE = "#fbbf24";

function loaded(url) {
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);
    image.src = url;
  });
}

/** Where the homography `m` (3x3, rows) takes the point (x, y); null behind the camera. */
export function project(m, x, y) {
  const w = m[2][0] * x + m[2][1] * y + m[2][2];
  if (Math.abs(w) < 1e-12) return null;
  return [(m[0][0] * x + m[0][1] * y + m[0][2]) / w, (m[1][0] * x + m[1][1] * y + m[1][2]) / w];
}

function draw(canvas, query, match, queryImage, matchImage, show) {
  const sq = HEIGHT / query.height;
  const sm = HEIGHT / match.height;
  const left = query.width * sq;
  const width = left + GAP + match.width * sm;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(HEIGHT * ratio);
  const c = canvas.getContext("2d");
  c.setTransform(ratio, 0, 0, ratio, 0, 0);
  c.fillStyle = "#111";
  c.fillRect(0, 0, width, HEIGHT);
  const image = (picture, x, w) => {
    if (picture) c.drawImage(picture, x, 0, w, HEIGHT);
    else {
      c.fillStyle = "#333";
      c.fillRect(x, 0, w, HEIGHT);
      c.fillStyle = "#aaa";
      c.fillText("preview not available", x + 12, 24);
    }
  };
  image(queryImage, 0, left);
  image(matchImage, left + GAP, match.width * sm);
  const region = query.box || [0, 0, query.width, query.height];
  const corners = [[region[0], region[1]], [region[0] + region[2], region[1]], [region[0] + region[2], region[1] + region[3]], [region[0], region[1] + region[3]]];
  if (show.outline && query.box) {
    c.strokeStyle = OUTLINE;
    c.lineWidth = 2;
    c.setLineDash([6, 4]);
    c.strokeRect(region[0] * sq, region[1] * sq, region[2] * sq, region[3] * sq);
    c.setLineDash([]);
  }
  if (show.lines) {
    c.lineWidth = 1.2;
    c.strokeStyle = LINE;
    c.fillStyle = LINE;
    match.query_points.forEach(([qx, qy], i) => {
      const [mx, my] = match.database_points[i];
      c.beginPath();
      c.moveTo(qx * sq, qy * sq);
      c.lineTo(left + GAP + mx * sm, my * sm);
      c.stroke();
      c.beginPath();
      c.arc(qx * sq, qy * sq, 2.2, 0, 2 * Math.PI);
      c.arc(left + GAP + mx * sm, my * sm, 2.2, 0, 2 * Math.PI);
      c.fill();
    });
  }
  if (show.outline && match.homography) {
    const mapped = corners.map(([x, y]) => project(match.homography, x, y));
    if (mapped.every(Boolean)) {
      c.save();
      c.beginPath();
      c.rect(left + GAP, 0, match.width * sm, HEIGHT);
      c.clip();
      c.strokeStyle = OUTLINE;
      c.lineWidth = 3;
      c.beginPath();
      mapped.forEach(([x, y], i) => (i ? c.lineTo(left + GAP + x * sm, y * sm) : c.moveTo(left + GAP + x * sm, y * sm)));
      c.closePath();
      c.stroke();
      c.restore();
    }
  }
}

/**
 * Open the match view of `results[position]` for `query` ({image, width, height, box, name});
 * `onSearch(id)` searches with the match.
 */
export function openMatch(query, results, position, onSearch) {
  const show = { lines: true, outline: true };
  let current = position;
  const canvas = h("canvas", { class: "match-canvas", role: "img" });
  const legend = h("div", { class: "match-legend" });
  const previous = h("button", { class: "button", type: "button", title: "Previous match (←)", onclick: () => go(-1) }, "←");
  const next = h("button", { class: "button", type: "button", title: "Next match (→)", onclick: () => go(1) }, "→");
  const linesBox = h("input", { type: "checkbox", checked: true, onchange: (e) => { show.lines = e.target.checked; repaint(); } });
  const outlineBox = h("input", { type: "checkbox", checked: true, onchange: (e) => { show.outline = e.target.checked; repaint(); } });
  const searchButton = h("button", { class: "button", type: "button", onclick: () => { document.getElementById("dialog").close(); onSearch(results[current].id); } }, "Search with this image");
  const body = openDialog("Match", [previous, next, h("label", { class: "toggle" }, linesBox, "Lines"), h("label", { class: "toggle" }, outlineBox, "Outline"), searchButton]);
  body.append(canvas, legend);
  const title = document.getElementById("dialog-title");
  let matchImage = null;
  let ticket = 0;

  const repaint = () => draw(canvas, query, results[current], query.image, matchImage, show);
  async function go(step) {
    current = Math.max(0, Math.min(results.length - 1, current + step));
    const match = results[current];
    const mine = ++ticket;
    previous.disabled = current === 0;
    next.disabled = current === results.length - 1;
    title.textContent = `#${current + 1} ${match.path}`;
    canvas.setAttribute("aria-label", `${query.name || "query"} beside ${match.path}: ${match.inliers} inlier correspondences`);
    clear(legend,
      h("span", {}, `score ${formatScore(match.score)}`),
      h("span", { class: `badge${match.inliers ? " good" : ""}` }, `${match.inliers} inliers`),
      h("span", {}, h("span", { class: "swatch", style: `background:${LINE}` }), "inlier correspondences"),
      h("span", {}, h("span", { class: "swatch", style: `background:${OUTLINE}` }), match.homography ? "query region mapped by the homography" : "no homography (not verified)"),
      h("span", { class: "muted" }, `${match.width}×${match.height} px`),
    );
    matchImage = null;
    repaint();
    const picture = await loaded(fileUrl(match.id));
    if (mine !== ticket) return;
    matchImage = picture;
    repaint();
    canvas.dataset.ready = "true";
  }
  body.parentElement.onkeydown = (event) => {
    if (event.key === "ArrowLeft") { event.preventDefault(); go(-1); }
    if (event.key === "ArrowRight") { event.preventDefault(); go(1); }
  };
  go(0);
}
