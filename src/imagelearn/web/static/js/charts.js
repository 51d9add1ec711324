// Charts drawn as SVG in the page: line charts (learning curves) and scatter maps, with axes,
// ticks and one legend entry per series.

const SVG = "http://www.w3.org/2000/svg";
// Distinguishable colours (Tableau 10), then repeated with another dash.
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export const colorOf = (index) => PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];

/** An SVG element: s("circle", {cx: 1, cy: 2, r: 3}, child...). */
export function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Tick values for [low, high]: integers only when `integer` (epochs), about `count` of them. */
export function ticks(low, high, { integer = false, count = 6 } = {}) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
  if (integer) step = Math.max(1, Math.ceil(step));
  const first = Math.ceil(low / step) * step;
  const values = [];
  for (let value = first; value <= high + step * 1e-9; value += step) values.push(Number(value.toFixed(10)));
  return values;
}

const MARGIN = { left: 52, right: 14, top: 14, bottom: 40 };

/**
 * A line chart: `series` = [{name, points: [[x, y], ...], dashed}], axes labelled, x ticks
 * integers when `integerX` (epochs), a legend entry per series. Returns a <figure>.
 */
export function lineChart({ series, xLabel, yLabel, yRange = null, integerX = false, width = 460, height = 280, caption = "" }) {
  const xs = series.flatMap((line) => line.points.map(([x]) => x));
  const ys = series.flatMap((line) => line.points.map(([, y]) => y)).filter((y) => y !== null && Number.isFinite(y));
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const [y0, y1] = yRange || (ys.length ? [Math.min(0, ...ys), Math.max(...ys) * 1.05 || 1] : [0, 1]);
  const inner = { w: width - MARGIN.left - MARGIN.right, h: height - MARGIN.top - MARGIN.bottom };
  const px = (x) => MARGIN.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * inner.w : inner.w / 2);
  const py = (y) => MARGIN.top + inner.h - ((y - y0) / (y1 - y0 || 1)) * inner.h;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": `${yLabel} against ${xLabel}` });
  const xTicks = integerX ? ticks(x0, x1, { integer: true }) : ticks(x0, x1);
  const yTicks = ticks(y0, y1);
  svg.append(
    ...yTicks.map((y) => s("g", { class: "tick y" }, s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: py(y), y2: py(y) }), s("text", { x: MARGIN.left - 6, y: py(y) + 4, "text-anchor": "end" }, formatTick(y)))),
    ...xTicks.map((x) => s("g", { class: "tick x", "data-value": x }, s("line", { x1: px(x), x2: px(x), y1: MARGIN.top + inner.h, y2: MARGIN.top + inner.h + 4 }), s("text", { x: px(x), y: MARGIN.top + inner.h + 17, "text-anchor": "middle" }, formatTick(x)))),
    s("line", { class: "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + inner.h, y2: MARGIN.top + inner.h }),
    s("text", { class: "axis-label", x: MARGIN.left + inner.w / 2, y: height - 4, "text-anchor": "middle" }, xLabel),
    s("text", { class: "axis-label", x: -(MARGIN.top + inner.h / 2), y: 13, transform: "rotate(-90)", "text-anchor": "middle" }, yLabel),
  );
  series.forEach((line, index) => {
    const color = line.color || colorOf(index);
    const drawn = line.points.filter(([, y]) => y !== null && Number.isFinite(y));
    svg.append(
      s("polyline", { class: "series", "data-series": line.name, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": line.dashed ? "5 4" : null, points: drawn.map(([x, y]) => `${px(x)},${py(y)}`).join(" ") }),
      ...drawn.map(([x, y]) => s("circle", { cx: px(x), cy: py(y), r: 3, fill: color }, s("title", {}, `${line.name}: ${formatTick(x)}, ${y.toFixed(3)}`))),
    );
  });
  return figure(svg, legend(series.map((line, index) => ({ name: line.name, color: line.color || colorOf(index), dashed: line.dashed }))), caption);
}

/** A legend: one entry per item ({name, color, dashed}). */
export function legend(items) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const item of items) {
    const entry = document.createElement("li");
    entry.dataset.name = item.name;
    const swatch = document.createElement("span");
    swatch.className = `swatch${item.dashed ? " dashed" : ""}`;
    swatch.style.cssText = `--swatch: ${item.color}`;
    entry.append(swatch, document.createTextNode(item.name));
    list.append(entry);
  }
  return list;
}

export function figure(svg, legendList, caption = "") {
  const element = document.createElement("figure");
  element.className = "chart-figure";
  element.append(svg, legendList);
  if (caption) {
    const text = document.createElement("figcaption");
    text.textContent = caption;
    element.append(text);
  }
  return element;
}

function formatTick(value) {
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(0) : Number(value.toPrecision(3)).toString();
}

/** Scale [x, y] points into a box of `width` x `height` with `pad` pixels around. */
export function fitPoints(xs, ys, width, height, pad = 12) {
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((width - 2 * pad) / (x1 - x0 || 1), (height - 2 * pad) / (y1 - y0 || 1));
  const ox = (width - (x1 - x0) * scale) / 2;
  const oy = (height - (y1 - y0) * scale) / 2;
  return xs.map((x, i) => [ox + (x - x0) * scale, height - (oy + (ys[i] - y0) * scale)]);
}
