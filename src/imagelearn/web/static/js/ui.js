// Small DOM helpers: elements built without innerHTML, cards, empty states, toasts, grids.

import { thumbnailUrl } from "./api.js";

/** An element: h("div", {class: "x", onclick: f}, child, "text", ...). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "style") element.style.cssText = value; // CSSOM: allowed by the page's CSP
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

export function toast(message, kind = "info", ms = 4500) {
  const box = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), ms);
}

export function empty(title, text = "") {
  return h("div", { class: "empty" }, h("div", { class: "big" }, title), text ? h("div", {}, text) : null);
}

export function errorBox(message) {
  return h("div", { class: "error-box", role: "alert" }, message);
}

export function spinner(label = "Loading") {
  return h("span", { class: "spinner", role: "status", "aria-label": label });
}

export const formatScore = (score) => (Math.abs(score) >= 100 ? score.toFixed(0) : score.toFixed(3));

/** A card for one image: thumbnail, name, figures; `onOpen` on click or Enter. */
export function card(item, { rank, figures = [], onOpen, selected = false } = {}) {
  const name = item.path.split("/").pop();
  const element = h(
    "button",
    {
      class: `card${selected ? " selected" : ""}`,
      type: "button",
      title: item.path,
      dataset: { id: item.id },
      onclick: () => onOpen && onOpen(item),
    },
    h("div", { class: "thumb" }, h("img", { src: thumbnailUrl(item.id), alt: name, loading: "lazy", decoding: "async" })),
    rank !== undefined ? h("span", { class: "rank" }, `#${rank}`) : null,
    h("div", { class: "meta" }, h("div", { class: "name" }, name), figures.length ? h("div", { class: "figures" }, figures) : null),
  );
  return element;
}

/** Arrow keys move the focus between the cards of `grid` (row by row as laid out). */
export function gridKeys(grid) {
  grid.addEventListener("keydown", (event) => {
    const cards = [...grid.querySelectorAll(".card")];
    const position = cards.indexOf(document.activeElement);
    if (position < 0) return;
    const columns = Math.max(1, Math.round(grid.clientWidth / cards[0].getBoundingClientRect().width));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns, Home: -position, End: cards.length };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = Math.min(cards.length - 1, Math.max(0, position + moves[event.key]));
    cards[next].focus();
  });
}

/** A "previous / page x of y / next" bar. */
export function pager(offset, limit, total, go) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const page = Math.floor(offset / limit) + 1;
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("button", { class: "button", type: "button", disabled: page <= 1, onclick: () => go(offset - limit), title: "Previous page ([)" }, "← Previous"),
    h("span", { class: "muted" }, `Page ${page} of ${pages} · ${total} images`),
    h("button", { class: "button", type: "button", disabled: page >= pages, onclick: () => go(offset + limit), title: "Next page (])" }, "Next →"),
  );
}

/** Open the shared dialog with a head (title, actions) and a body; returns the body element. */
export function openDialog(title, actions = [], onClose = null) {
  const dialog = document.getElementById("dialog");
  const body = h("div", { class: "dialog-body" });
  const close = h("button", { class: "icon-button", type: "button", "aria-label": "Close (Esc)", title: "Close (Esc)", onclick: () => dialog.close() }, "×");
  clear(dialog, h("div", { class: "dialog-head" }, h("h2", { id: "dialog-title" }, title), ...actions, close), body);
  dialog.setAttribute("aria-labelledby", "dialog-title");
  dialog.onkeydown = null;
  dialog.onclose = () => {
    clear(dialog);
    if (onClose) onClose();
  };
  if (!dialog.open) dialog.showModal();
  return body;
}

/**
 * A text box with ranked suggestions (arrow keys, Enter, Esc); `suggest(text)` -> [{value, label,
 * hint}], `choose(value)` on Enter or a click. Returns the element to place: the box and its list.
 */
export function suggestBox(input, suggest, choose) {
  const list = h("ul", { role: "listbox", hidden: true });
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  const box = h("div", { class: "suggest" }, input, list);
  let items = [];
  let active = -1;
  let ticket = 0;
  const render = () => {
    clear(list, items.map((item, i) => h("li", { role: "option", "aria-selected": i === active ? "true" : "false", onmousedown: (e) => { e.preventDefault(); pick(i); } }, h("span", {}, item.label), item.hint ? h("span", { class: "muted" }, item.hint) : null)));
    list.hidden = items.length === 0;
    input.setAttribute("aria-expanded", String(!list.hidden));
  };
  const hide = () => { items = []; active = -1; render(); };
  const pick = (i) => { const item = items[i]; hide(); if (item) { input.value = item.value; choose(item.value); } };
  input.addEventListener("input", async () => {
    const mine = ++ticket;
    const found = input.value.trim() ? await suggest(input.value.trim()).catch(() => []) : [];
    if (mine !== ticket) return;
    items = found;
    active = -1;
    render();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && items.length) { active = (active + 1) % items.length; render(); event.preventDefault(); }
    else if (event.key === "ArrowUp" && items.length) { active = (active - 1 + items.length) % items.length; render(); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); if (active >= 0) pick(active); else { hide(); choose(input.value.trim()); } }
    else if (event.key === "Escape" && items.length) { event.stopPropagation(); hide(); }
  });
  input.addEventListener("blur", hide);
  return box;
}

/** Suggestions of tag names for a prefix, most frequent first. */
export async function tagSuggestions(api, prefix) {
  const { tags } = await api("/api/tags", { prefix, top: 8 });
  return tags.map((tag) => ({ value: tag.name, label: tag.name, hint: `${tag.count}` }));
}
