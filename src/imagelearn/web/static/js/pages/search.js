// Search: by an image (dropped, pasted, picked, or one of the collection), optionally a box of it,
// and by keyword; the keyword filters the visual results when both are given.

import { api, fileUrl, postForm, serverInfo } from "../api.js";
import { openDetails } from "../details.js";
import { openMatch } from "../match.js";
import { navigate } from "../main.js";
import { card, clear, empty, errorBox, formatScore, gridKeys, h, spinner, suggestBox, tagSuggestions } from "../ui.js";

export const title = "Search";

const TOP = 24;
const MIN_BOX = 8;
const MODE_LABELS = { hybrid: "Hybrid", local: "Local", global: "Global" };

/** The query image in the drop zone, with the box drawn on it; `onBox(box | null)` after a drag. */
function queryCanvas(image, width, height, box, onBox) {
  const canvas = h("canvas", { "aria-label": "Query image: drag a box to search that region" });
  const side = 330;
  const scale = Math.min(side / width, 420 / height, 1.0) || 1;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * scale * ratio);
  canvas.height = Math.round(height * scale * ratio);
  canvas.style.width = `${Math.round(width * scale)}px`;
  const context = canvas.getContext("2d");
  let current = box;
  const draw = () => {
    context.setTransform(ratio * scale, 0, 0, ratio * scale, 0, 0);
    context.drawImage(image, 0, 0, width, height);
    if (current) {
      const [x, y, w, hgt] = current;
      context.fillStyle = "rgba(0,0,0,0.45)";
      context.beginPath();
      context.rect(0, 0, width, height);
      context.rect(x, y, w, hgt);
      context.fill("evenodd");
      context.strokeStyle = "#fbbf24";
      context.lineWidth = 2 / scale;
      context.strokeRect(x, y, w, hgt);
    }
  };
  const toImage = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [
      Math.max(0, Math.min(width, ((event.clientX - rect.left) / rect.width) * width)),
      Math.max(0, Math.min(height, ((event.clientY - rect.top) / rect.height) * height)),
    ];
  };
  let start = null;
  canvas.addEventListener("pointerdown", (event) => {
    start = toImage(event);
    canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
    event.stopPropagation();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!start) return;
    const [x, y] = toImage(event);
    current = [Math.min(x, start[0]), Math.min(y, start[1]), Math.abs(x - start[0]), Math.abs(y - start[1])];
    draw();
  });
  canvas.addEventListener("pointerup", () => {
    if (!start) return;
    start = null;
    if (current && (current[2] < MIN_BOX || current[3] < MIN_BOX)) current = box; // a click, not a box
    draw();
    if (current !== box) onBox(current && current.map(Math.round));
  });
  canvas.addEventListener("click", (event) => event.stopPropagation());
  draw();
  return canvas;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("this image cannot be shown by the browser (the search still works)"));
    image.src = url;
  });
}

export async function mount(root, params) {
  const info = await serverInfo();
  const state = {
    query: null, // {kind: "upload", file, url} or {kind: "id", id}
    image: null,
    size: null, // [width, height] of the query in the server's pixels
    box: null,
    mode: info.default_mode,
    verify: true,
    expand: false,
    keyword: params.get("q") || "",
    ticket: 0,
    last: null,
  };

  const fileInput = h("input", { type: "file", accept: "image/*", class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
  const zone = h("div", { class: "dropzone", tabindex: "0", role: "button", "aria-label": "Query image: drop, paste or pick a photo" });
  const actions = h("div", { class: "query-actions" });
  const keywordInput = h("input", { type: "search", placeholder: "Keyword, e.g. daisy (press /)", autocomplete: "off", "data-keyword": "", "aria-label": "Keyword", value: state.keyword });
  const modeButtons = h("div", { class: "segmented", role: "group", "aria-label": "Mode" });
  const verifyBox = h("input", { type: "checkbox", checked: state.verify });
  const expandBox = h("input", { type: "checkbox", checked: state.expand });
  const summary = h("div", { class: "summary" });
  const results = h("div", { class: "grid", id: "results" });
  gridKeys(results);

  const renderModes = () => {
    clear(modeButtons, info.modes.map((mode) => h("button", {
      type: "button",
      "aria-pressed": String(mode === state.mode),
      onclick: () => { state.mode = mode; renderModes(); run(); },
      title: { hybrid: "global shortlist, verified by local features (best)", local: "visual words", global: "CNN descriptor only" }[mode],
    }, MODE_LABELS[mode] || mode)));
  };
  renderModes();

  const renderZone = () => {
    zone.classList.toggle("has-image", Boolean(state.image));
    if (!state.image) {
      clear(zone, h("div", { class: "hint" }, h("div", {}, h("strong", {}, "Drop a photo"), ", paste one (Ctrl+V)"), h("div", {}, "or click to pick a file")));
      clear(actions);
      return;
    }
    const [width, height] = state.size;
    clear(zone, queryCanvas(state.image, width, height, state.box, (box) => { state.box = box; renderZone(); run(); }));
    clear(actions,
      h("span", { class: "muted" }, state.box ? `box ${state.box.join(", ")}` : "drag on the image to search a region"),
      state.box ? h("button", { class: "button", type: "button", onclick: () => { state.box = null; renderZone(); run(); } }, "Clear box") : null,
      h("button", { class: "button", type: "button", onclick: () => { resetQuery(); run(); } }, "Remove image"),
    );
  };

  const resetQuery = () => {
    if (state.query && state.query.url) URL.revokeObjectURL(state.query.url);
    state.query = null;
    state.image = null;
    state.size = null;
    state.box = null;
    renderZone();
  };

  const useFile = async (file) => {
    if (!file) return;
    resetQuery();
    const url = URL.createObjectURL(file);
    state.query = { kind: "upload", file, url };
    try {
      state.image = await loadImage(url);
      state.size = [state.image.naturalWidth, state.image.naturalHeight];
    } catch {
      state.image = null;
    }
    renderZone();
    run();
  };

  const useId = async (id) => {
    resetQuery();
    state.query = { kind: "id", id };
    try {
      const item = await api(`/api/images/${id}`);
      state.size = [item.width, item.height];
      state.image = await loadImage(fileUrl(id));
    } catch (error) {
      clear(summary, errorBox(error.message));
      return;
    }
    renderZone();
    run();
  };

  /** The form of an upload search (an indexed image with a box is sent as an upload). */
  const uploadForm = async () => {
    let file = state.query.file;
    if (!file) {
      const blob = await (await fetch(fileUrl(state.query.id))).blob();
      file = new File([blob], `image-${state.query.id}`, { type: blob.type });
    }
    const form = new FormData();
    form.append("file", file);
    form.append("mode", state.mode);
    form.append("verify", state.verify ? "true" : "false");
    form.append("expand", state.expand ? "true" : "false");
    form.append("top", String(TOP));
    if (state.box) form.append("roi", state.box.join(","));
    if (state.keyword) form.append("keyword", state.keyword);
    return form;
  };

  const run = async () => {
    const ticket = ++state.ticket;
    const started = performance.now();
    clear(summary, spinner("Searching"), h("span", { class: "muted" }, "Searching…"));
    try {
      let answer;
      if (state.query && (state.query.kind === "upload" || state.box)) {
        answer = await postForm("/api/search", await uploadForm());
      } else if (state.query) {
        answer = await api(`/api/search/${state.query.id}`, { mode: state.mode, verify: state.verify, expand: state.expand, top: TOP, keyword: state.keyword });
      } else if (state.keyword) {
        answer = await api("/api/tags/search", { q: state.keyword, top: 120 });
      } else {
        clear(summary);
        clear(results, empty("Search the collection by example or by keyword", "Drop a photo in the query box, or type a keyword such as a class or an ImageNet label."));
        return;
      }
      if (ticket !== state.ticket) return;
      state.last = answer;
      showResults(answer, Math.round(performance.now() - started));
    } catch (error) {
      if (ticket !== state.ticket) return;
      clear(summary, errorBox(error.message));
      clear(results);
    }
  };

  const showResults = (answer, ms) => {
    const visual = Boolean(answer.mode);
    const count = answer.results.length;
    const what = visual
      ? `${MODE_LABELS[answer.mode] || answer.mode}${state.verify ? ", verified" : ""}${state.expand ? ", expanded" : ""}${answer.keyword ? `, tagged “${answer.keyword}…”` : ""}`
      : `images tagged “${answer.query}…”`;
    clear(summary, h("h2", {}, `${count} result${count === 1 ? "" : "s"}`), h("span", { class: "muted" }, `${what} · ${ms} ms`));
    if (!count) {
      const hint = visual
        ? answer.keyword ? "No visual match carries this keyword; clear the keyword to see them all." : "Nothing matched; try another mode, or a larger box."
        : "No tag starts so; the suggestions list the tags there are.";
      clear(results, empty("No results", hint));
      return;
    }
    clear(results, answer.results.map((item, position) => {
      const figures = visual
        ? [h("span", {}, `score ${formatScore(item.score)}`), h("span", { class: `badge${item.inliers ? " good" : ""}`, title: "RANSAC inliers" }, `${item.inliers} inliers`)]
        : [h("span", { class: "chip", title: item.tag.source }, `${item.tag.name} ${item.tag.score.toFixed(2)}`)];
      return card(item, {
        rank: position + 1,
        figures,
        onOpen: () => (visual ? openMatch(queryView(answer), answer.results, position, (id) => navigate("search", { id })) : openDetails(item.id)),
      });
    }));
  };

  /** What the match view needs of the query: its image, size in server pixels, box. */
  const queryView = (answer) => ({
    image: state.image,
    width: answer.query.width,
    height: answer.query.height,
    box: answer.query.roi || null,
    name: answer.query.name || answer.query.path,
  });

  verifyBox.addEventListener("change", () => { state.verify = verifyBox.checked; run(); });
  expandBox.addEventListener("change", () => { state.expand = expandBox.checked; if (state.expand && !state.verify) { state.verify = true; verifyBox.checked = true; } run(); });
  zone.addEventListener("click", () => { if (!state.image) fileInput.click(); });
  zone.addEventListener("keydown", (event) => { if ((event.key === "Enter" || event.key === " ") && !state.image) { event.preventDefault(); fileInput.click(); } });
  fileInput.addEventListener("change", () => useFile(fileInput.files[0]));
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); useFile(event.dataTransfer.files[0]); });
  const onPaste = (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); useFile(file); }
  };
  document.addEventListener("paste", onPaste);
  const keywordBox = suggestBox(keywordInput, (text) => tagSuggestions(api, text), (value) => { state.keyword = value; run(); });
  keywordInput.addEventListener("search", () => { if (!keywordInput.value) { state.keyword = ""; run(); } });

  root.append(h("div", { class: "search-layout" },
    h("aside", { class: "panel query-panel", "aria-label": "Query" },
      zone, fileInput, actions,
      h("div", { class: "options" },
        h("div", { class: "field" }, "Mode", modeButtons),
        h("label", { class: "toggle" }, verifyBox, "Verify (RANSAC re-ranking)"),
        h("label", { class: "toggle" }, expandBox, "Query expansion"),
        h("label", { class: "field" }, "Keyword", keywordBox),
      ),
    ),
    h("section", { "aria-label": "Results" }, summary, results),
  ));
  renderZone();
  if (params.get("id") !== null && /^\d+$/.test(params.get("id"))) useId(Number(params.get("id")));
  else run();
  return () => { document.removeEventListener("paste", onPaste); resetQuery(); };
}
