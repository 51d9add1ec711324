// Review: what a trained model or a clustering did, from its run directory (`serve --review`).
//
// Classifier runs (bof, classify, evaluation): the metrics, the confusion matrix (click a cell to
// see its images), the misclassified images with their top predictions, the learning curves of a
// classify run. Transfer comparisons: the learning curves of every arm. Clusterings: the metrics,
// the 2-D map (one legend entry per cluster, thumbnails on hover) and every cluster's images.

import { api } from "../api.js";
import { colorOf, fitPoints, legend, lineChart, s } from "../charts.js";
import { clear, empty, errorBox, h, spinner } from "../ui.js";

export const title = "Review";

// Images of a cluster shown before "show all".
const CLUSTER_PREVIEW = 16;
const MAP_SIZE = { width: 640, height: 460 };

function ensureStyles() {
  if (!document.querySelector("link[data-review]")) {
    document.head.append(h("link", { rel: "stylesheet", href: "/static/review.css", dataset: { review: "1" } }));
  }
}

const thumbnail = (run, image) => `/api/review/thumbnail?${new URLSearchParams({ run, image })}`;
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const RATES = new Set(["accuracy", "macro_f1", "sensitivity", "specificity", "purity"]);

function figureValue(key, value) {
  if (typeof value !== "number") return String(value);
  if (RATES.has(key) || key.startsWith("best ")) return pct(value);
  if (key.endsWith("seconds")) return `${value.toFixed(1)} s`;
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}

function figures(values) {
  return h("dl", { class: "review-figures" }, Object.entries(values).filter(([, v]) => v !== null && v !== undefined).map(([key, value]) =>
    h("div", { dataset: { key } }, h("dt", {}, key.replaceAll("_", " ")), h("dd", {}, figureValue(key, value)))));
}

/** A card of image `item` ({image, name}) of `run`, with lines of figures under it. */
function imageCard(run, item, lines = []) {
  return h("div", { class: "card review-image", title: item.name, dataset: { image: item.image, name: item.name } },
    h("div", { class: "thumb" }, h("img", { src: thumbnail(run, item.image), alt: item.name, loading: "lazy", decoding: "async" })),
    h("div", { class: "meta" }, h("div", { class: "name" }, item.name), lines.map((line) => h("div", { class: "figures" }, line))));
}

export async function mount(root, params) {
  ensureStyles();
  const run = params.get("run");
  if (!run) return listRuns(root);
  const loading = h("div", { class: "summary" }, spinner(), h("span", { class: "muted" }, `Reading ${run}…`));
  root.append(loading);
  const data = await api("/api/review/run", { run });
  loading.remove();
  root.append(h("div", { class: "summary review-title" }, h("h2", {}, data.name), h("span", { class: "badge" }, data.kind), h("a", { href: "#/review" }, "all runs")));
  root.dataset.kind = data.kind;
  const page = h("div", { class: "review", dataset: { run, kind: data.kind } });
  root.append(page);
  page.append(section("Metrics", figures(data.figures)));
  if (data.kind === "transfer") showTransfer(page, data);
  else if (data.kind === "cluster") showCluster(page, run, data);
  else showClassifier(page, run, data);
  return null;
}

async function listRuns(root) {
  const { runs } = await api("/api/review/runs");
  root.append(h("div", { class: "summary" }, h("h2", {}, "Runs"), h("span", { class: "muted" }, `${runs.length} found`)));
  if (!runs.length) {
    root.append(empty("No runs here yet", "Train a model (bof train, classify train), compare transfer or cluster into the folder given to --review."));
    return null;
  }
  root.append(h("ul", { class: "review-runs" }, runs.map((item) =>
    h("li", {}, h("a", { href: `#/review?${new URLSearchParams({ run: item.name })}` }, item.name), " ", h("span", { class: "badge" }, item.kind)))));
  return null;
}

function section(heading, ...children) {
  return h("section", { class: "review-section" }, h("h3", {}, heading), children);
}

// ---- classifiers --------------------------------------------------------------------------

function showClassifier(page, run, data) {
  if (data.kind === "bof") {
    // the visual words of the model: the words page (#/words) is another area of the app
    page.append(h("p", {}, h("a", { class: "review-words-link", href: `#/words?${new URLSearchParams({ run })}` }, "Visual words of this model →")));
  }
  const images = h("div", { class: "review-cell-images", "aria-live": "polite" }, h("p", { class: "muted" }, "Click a cell of the matrix to see its images."));
  page.append(
    section("Confusion matrix", confusionTable(run, data.confusion, images), images),
    section("Per class", perClassTable(data.per_class)),
    section(`Misclassified (${data.misclassified.length})`, misclassifiedGrid(run, data)),
  );
  if (data.history && data.history.length) page.append(section("Learning curves", historyCharts(data.history)));
}

function confusionTable(run, confusion, target) {
  const { labels, matrix, listable } = confusion;
  const head = h("tr", {}, h("th", { class: "corner" }, "true ↓ predicted →"), labels.map((label) => h("th", { scope: "col" }, label)));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return h("tr", {}, h("th", { scope: "row" }, labels[i]), row.map((count, j) => {
      const stored = listable === "all" || i !== j;
      const button = h("button", {
        type: "button",
        class: `review-cell${i === j ? " diagonal" : ""}`,
        dataset: { true: labels[i], predicted: labels[j], count },
        disabled: !stored || count === 0,
        title: stored ? `${count} images of ${labels[i]} predicted ${labels[j]}` : "this run stored no list of its correctly classified images (no predictions.csv)",
        onclick: () => showCell(run, labels[i], labels[j], target, button),
      }, String(count));
      button.style.cssText = `--rate: ${count / total}`;
      return h("td", {}, button);
    }));
  });
  const table = h("table", { class: "review-confusion" }, h("thead", {}, head), h("tbody", {}, rows));
  const note = listable === "all" ? null : h("p", { class: "muted" }, "This run was written before predictions.csv: only the misclassified cells list their images.");
  return h("div", { class: "review-confusion-wrap" }, table, note);
}

async function showCell(run, trueLabel, predicted, target, button) {
  for (const other of document.querySelectorAll(".review-cell[aria-pressed]")) other.removeAttribute("aria-pressed");
  button.setAttribute("aria-pressed", "true");
  clear(target, spinner());
  try {
    const cell = await api("/api/review/cell", { run, true: trueLabel, predicted });
    clear(target,
      h("h4", {}, `true ${cell.true}, predicted ${cell.predicted} · ${cell.count} image${cell.count === 1 ? "" : "s"}`),
      h("div", { class: "grid review-grid", dataset: { true: cell.true, predicted: cell.predicted } }, cell.images.map((item) => imageCard(run, item))));
    target.dataset.true = cell.true;
    target.dataset.predicted = cell.predicted;
  } catch (error) {
    clear(target, errorBox(error.message));
  }
}

function perClassTable(perClass) {
  const names = Object.keys(perClass);
  return h("table", { class: "review-table" },
    h("thead", {}, h("tr", {}, ["class", "precision", "recall", "F1", "support"].map((c) => h("th", {}, c)))),
    h("tbody", {}, names.map((name) => {
      const row = perClass[name];
      return h("tr", { dataset: { class: name } }, h("th", { scope: "row" }, name), h("td", {}, pct(row.precision)), h("td", {}, pct(row.recall)), h("td", {}, pct(row.f1)), h("td", {}, String(row.support)));
    })));
}

function misclassifiedGrid(run, data) {
  if (!data.misclassified.length) return h("p", { class: "muted" }, "None: every held-out image was classified correctly.");
  const scoreName = data.score_name || "score";
  return h("div", { class: "grid review-grid review-misclassified" }, data.misclassified.map((item) =>
    imageCard(run, item, [
      h("span", {}, `true ${item.true}`),
      h("span", { class: "bad" }, `predicted ${item.predicted}`),
      item.top.length ? h("ol", { class: "review-top", title: `top classes by ${scoreName}` }, item.top.map((top) => h("li", { dataset: { label: top.label } }, `${top.label} ${scoreName === "probability" ? pct(top.score) : top.score.toFixed(3)}`))) : null,
    ])));
}

function historyCharts(history) {
  const points = (key) => history.map((row) => [row.epoch, row[key]]);
  const phases = [...new Set(history.map((row) => row.phase))].join(", ");
  return h("div", { class: "review-charts" },
    lineChart({ series: [{ name: "train", points: points("loss") }, { name: "validation", points: points("val_loss") }], xLabel: "epoch", yLabel: "cross-entropy loss", integerX: true, caption: `phases: ${phases}` }),
    lineChart({ series: [{ name: "train", points: points("train_accuracy") }, { name: "validation", points: points("val_accuracy") }], xLabel: "epoch", yLabel: "accuracy", yRange: [0, 1], integerX: true }));
}

// ---- transfer comparisons ----------------------------------------------------------------

function showTransfer(page, data) {
  const sizes = [...new Set(data.arms.map((arm) => arm.n_train))].sort((a, b) => a - b);
  const modes = [...new Set(data.arms.map((arm) => arm.mode))];
  const series = data.arms.map((arm) => ({
    name: `${arm.mode}, ${arm.n_train} images`,
    color: colorOf(modes.indexOf(arm.mode)),
    dashed: arm.n_train !== sizes[sizes.length - 1],
    points: arm.curve.map((accuracy, epoch) => [epoch + 1, accuracy]),
  }));
  page.append(section("Learning curves",
    h("div", { class: "review-charts" },
      lineChart({ series, xLabel: "epoch", yLabel: "validation accuracy", yRange: [0, 1], integerX: true, width: 560, caption: "solid: all training images; dashed: fewer" }),
      lineChart({ series: modes.map((mode, index) => ({ name: mode, color: colorOf(index), points: data.arms.filter((arm) => arm.mode === mode).map((arm) => [arm.n_train, arm.asymptote]) })), xLabel: "training images", yLabel: "best validation accuracy", yRange: [0, 1], integerX: true }))),
  section("Arms", h("table", { class: "review-table" },
    h("thead", {}, h("tr", {}, ["mode", "train images", "start", "slope (mean acc)", "epochs to 90%", "asymptote", "seconds"].map((c) => h("th", {}, c)))),
    h("tbody", {}, data.arms.map((arm) => h("tr", {}, h("th", { scope: "row" }, arm.mode), [arm.n_train, pct(arm.start), pct(arm.slope), arm.epochs_to_90, pct(arm.asymptote), arm.seconds.toFixed(1)].map((v) => h("td", {}, String(v)))))))));
}

// ---- clusterings ---------------------------------------------------------------------------

function showCluster(page, run, data) {
  const name = (cluster) => (cluster < 0 ? "noise" : `cluster ${cluster}`);
  const colorFor = (cluster) => (cluster < 0 ? "#999999" : colorOf(cluster));
  if (data.map) page.append(section("Map", clusterMap(run, data, name, colorFor)));
  else page.append(section("Map", h("p", { class: "muted" }, "This run was written before clusters.csv kept the map's positions; see its map.png.")));
  if (data.silhouette) {
    const ks = Object.keys(data.silhouette).map(Number).sort((a, b) => a - b);
    page.append(section("Silhouette against k", lineChart({ series: [{ name: "mean silhouette", points: ks.map((k) => [k, data.silhouette[String(k)]]) }], xLabel: "k (clusters)", yLabel: "mean silhouette", integerX: true })));
  }
  const montages = h("div", { class: "review-montages" });
  page.append(section("Clusters", montages));
  for (const { cluster, size } of data.clusters) {
    const grid = h("div", { class: "grid review-grid" });
    const caption = h("p", { class: "muted review-shown" });
    const more = h("button", { type: "button", class: "button", hidden: true }, "show all");
    const box = h("div", { class: "review-montage", dataset: { cluster } }, h("h4", {}, h("span", { class: "swatch" }), `${name(cluster)} · ${size} image${size === 1 ? "" : "s"}`), caption, grid, more);
    box.querySelector(".swatch").style.cssText = `--swatch: ${colorFor(cluster)}`;
    montages.append(box);
    fillCluster(run, cluster, CLUSTER_PREVIEW, grid, caption, more);
  }
}

async function fillCluster(run, cluster, limit, grid, caption, more) {
  try {
    const answer = await api("/api/review/cluster", { run, cluster });
    const shown = answer.images.slice(0, limit);
    clear(grid, shown.map((item) => imageCard(run, item)));
    caption.textContent = `${shown.length} of its ${answer.size} images shown, closest to the centre first`;
    caption.dataset.shown = shown.length;
    caption.dataset.size = answer.size;
    more.hidden = shown.length >= answer.size;
    more.onclick = () => fillCluster(run, cluster, answer.size, grid, caption, more);
  } catch (error) {
    clear(grid, errorBox(error.message));
  }
}

function clusterMap(run, data, name, colorFor) {
  const { width, height } = MAP_SIZE;
  const placed = fitPoints(data.map.x, data.map.y, width, height);
  const tip = h("div", { class: "review-tip", hidden: true }, h("img", { alt: "" }), h("div", {}));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart review-map", role: "img", "aria-label": "2-D map of the images, coloured by cluster" });
  placed.forEach(([x, y], i) => {
    const cluster = data.map.cluster[i];
    const image = data.map.image[i];
    const dot = s("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 5, fill: colorFor(cluster), "data-image": image, "data-cluster": cluster });
    dot.addEventListener("mouseenter", () => {
      tip.querySelector("img").src = thumbnail(run, image);
      tip.querySelector("div").textContent = name(cluster);
      tip.style.cssText = `left: ${x + 14}px; top: ${Math.max(0, y - 60)}px`;
      tip.hidden = false;
      tip.dataset.image = image;
    });
    dot.addEventListener("mouseleave", () => { tip.hidden = true; });
    svg.append(dot);
  });
  const clusters = data.clusters.map((item) => ({ name: `${name(item.cluster)} (${item.size})`, color: colorFor(item.cluster) }));
  return h("div", { class: "review-map-wrap" }, h("div", { class: "review-map-box" }, svg, tip), legend(clusters));
}
