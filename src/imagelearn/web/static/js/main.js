// The page: a registry of pages (one module each under pages/), a hash router, global keys.
//
// A page module exports { title, mount(root, params) -> optional cleanup }; adding a page is one
// module and one entry in PAGES. Routes are "#/name?key=value", so every view can be linked.

import { api, serverInfo } from "./api.js";
import { clear, errorBox, h, openDialog } from "./ui.js";
import * as search from "./pages/search.js";
import * as browse from "./pages/browse.js";
import * as map from "./pages/map.js";
import * as duplicates from "./pages/duplicates.js";
import * as studio from "./pages/studio.js";
import * as review from "./pages/review.js";
import * as words from "./pages/words.js";

export const PAGES = { search, browse, map, duplicates, studio, review, words };
// The page "#/" opens: the studio when the server has one (`serve --studio`), else search, or the
// review on a server of runs only (`serve --review`).
let defaultPage = "search";

let cleanup = null;

function route() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: PAGES[name] ? name : defaultPage, params: new URLSearchParams(query || "") };
}

/** Go to a page: navigate("browse", {tag: "daisy"}). */
export function navigate(name, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const hash = `#/${name}${query.toString() ? `?${query}` : ""}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  const { name, params } = route();
  const root = document.getElementById("page");
  if (cleanup) cleanup();
  cleanup = null;
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === name);
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
  }
  document.title = `${PAGES[name].title} · imagelearn`;
  clear(root);
  try {
    cleanup = (await PAGES[name].mount(root, params)) || null;
  } catch (error) {
    clear(root, errorBox(error.message));
  }
}

function showShortcuts() {
  const rows = [
    ["/", "focus the keyword box"],
    ["Ctrl+V", "search with a pasted image (search page)"],
    ["← → ↑ ↓", "move between results"],
    ["Enter", "open the result in focus"],
    ["← →", "previous / next match (in the match view)"],
    ["[ ]", "previous / next page"],
    ["Esc", "close a dialog"],
    ["g s, g b, g m, g d, g t, g r", "go to search, browse, map, duplicates, studio, review"],
    ["b p e h, 1-9, space", "studio: brush, polygon, erase, pan; class; hold to pan"],
  ];
  const body = openDialog("Keyboard shortcuts");
  body.append(h("div", { class: "shortcuts" }, rows.flatMap(([keys, what]) => [h("span", {}, keys.split(", ").map((k) => h("kbd", {}, k)).flatMap((k, i) => (i ? [" ", k] : [k]))), h("span", {}, what)])));
}

function typing(event) {
  const target = event.target;
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement || target.isContentEditable;
}

let pendingG = false;
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event) || document.getElementById("dialog").open) return;
  if (pendingG) {
    pendingG = false;
    const target = { s: "search", b: "browse", m: "map", d: "duplicates", t: "studio", r: "review" }[event.key];
    if (target) { navigate(target); event.preventDefault(); }
    return;
  }
  if (event.key === "g") pendingG = true;
  else if (event.key === "?") showShortcuts();
  else if (event.key === "/") {
    const box = document.querySelector("[data-keyword]");
    if (box) { event.preventDefault(); box.focus(); box.select(); }
  } else if (event.key === "[" || event.key === "]") {
    const button = document.querySelector(`.pager button:${event.key === "[" ? "first-child" : "last-child"}`);
    if (button && !button.disabled) button.click();
  }
});

async function start() {
  const nav = document.getElementById("nav");
  const header = document.getElementById("collection-info");
  document.getElementById("help-button").addEventListener("click", showShortcuts);
  window.addEventListener("hashchange", render);
  window.addEventListener("imagelearn:info", ({ detail: info }) => {
    const parts = [`${info.name}`, `${info.images} images`, info.writable ? "writable" : "read-only"];
    header.textContent = parts.join(" · ");
  });
  const [indexError, studio, reviewed, bofRuns] = await Promise.all([
    serverInfo().then(() => null, (error) => error),
    api("/api/studio").then((answer) => answer, () => null),
    api("/api/review/runs").then((answer) => answer, () => null),
    api("/api/words/runs").then((answer) => answer.runs.length > 0, () => false),
  ]);
  if (studio) defaultPage = "studio";
  else if (indexError && reviewed) defaultPage = "review";
  if (indexError && studio) header.textContent = `studio: ${studio.source}, ${studio.images.length} images`;
  else if (indexError && reviewed) header.textContent = `review: ${reviewed.runs.length} runs`;
  else if (indexError) header.textContent = indexError.message;
  const available = { studio, review: reviewed, words: bofRuns };
  const shown = Object.entries(PAGES).filter(([name]) => (name in available ? available[name] : !indexError));
  clear(nav, shown.map(([name, page]) => h("a", { href: `#/${name}`, dataset: { page: name } }, page.title)));
  render();
}

start();
