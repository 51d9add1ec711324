// Browse: the whole collection, paged, with filters (folder, tag, cluster) or the map's selection;
// images are added here when the server is writable.

import { api, postForm, serverInfo } from "../api.js";
import { openDetails } from "../details.js";
import { navigate } from "../main.js";
import { selection } from "../state.js";
import { card, clear, empty, errorBox, gridKeys, h, pager, spinner, suggestBox, tagSuggestions, toast } from "../ui.js";

export const title = "Browse";

const PAGE = 48;

function addZone(onAdded) {
  const input = h("input", { type: "file", accept: "image/*", multiple: true, class: "sr-only", tabindex: "-1" });
  const zone = h("div", { class: "add-zone", role: "button", tabindex: "0", "aria-label": "Add images to the index" },
    h("strong", {}, "Add images: "), "drop photos here or click to pick them", input);
  const send = async (files) => {
    if (!files.length) return;
    const form = new FormData();
    for (const file of files) form.append("files", file);
    clear(zone, spinner("Adding"), ` Adding ${files.length} image${files.length === 1 ? "" : "s"}…`);
    try {
      const report = await postForm("/api/images", form);
      const parts = [`${report.added.length} added`];
      if (report.duplicates.length) parts.push(`${report.duplicates.length} already indexed`);
      if (report.skipped.length) parts.push(`${report.skipped.length} skipped (${report.skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")})`);
      toast(parts.join(", "));
      await serverInfo(true);
      onAdded();
    } catch (error) {
      toast(error.message, "error", 8000);
      onAdded();
    }
  };
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); } });
  input.addEventListener("change", () => send([...input.files]));
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); send([...event.dataTransfer.files]); });
  return zone;
}

export async function mount(root, params) {
  const info = await serverInfo();
  const filters = {
    folder: params.get("folder") || "",
    tag: params.get("tag") || "",
    cluster: params.get("cluster") || "",
    selection: params.get("selection") === "1" && selection.ids.length > 0,
  };
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const go = (changes) => navigate("browse", { ...filtersParams(), offset: 0, ...changes });
  const filtersParams = () => ({ folder: filters.folder, tag: filters.tag, cluster: filters.cluster, selection: filters.selection ? "1" : "" });

  const folderSelect = h("select", { "aria-label": "Folder", onchange: (e) => go({ folder: e.target.value }) }, h("option", { value: "" }, "All folders"));
  const tagInput = h("input", { type: "search", placeholder: "Any tag", value: filters.tag, autocomplete: "off", "data-keyword": "", "aria-label": "Tag" });
  const clusterSelect = h("select", { "aria-label": "Cluster", onchange: (e) => go({ cluster: e.target.value }) }, h("option", { value: "" }, "All clusters"));
  const summary = h("div", { class: "summary" });
  const grid = h("div", { class: "grid" });
  const footer = h("div");
  gridKeys(grid);

  if (info.writable) root.append(addZone(() => navigate("browse", { ...filtersParams(), offset })));
  root.append(
    h("div", { class: "filters" },
      h("label", { class: "field" }, "Folder", folderSelect),
      h("label", { class: "field" }, "Tag", suggestBox(tagInput, (text) => tagSuggestions(api, text), (value) => go({ tag: value }))),
      info.tag_sources.includes("cluster") ? h("label", { class: "field" }, "Cluster", clusterSelect) : null,
      filters.selection ? h("span", { class: "chip" }, `${selection.label}: ${selection.ids.length} images`, h("button", { type: "button", "aria-label": "Clear the selection", onclick: () => go({ selection: "" }) }, "×")) : null,
    ),
    summary, grid, footer,
  );
  tagInput.addEventListener("search", () => { if (!tagInput.value) go({ tag: "" }); });

  api("/api/folders").then(({ folders }) => {
    for (const [name, count] of Object.entries(folders)) if (name) folderSelect.append(h("option", { value: name, selected: name === filters.folder }, `${name || "(top folder)"} · ${count}`));
  }).catch(() => {});
  if (info.tag_sources.includes("cluster")) {
    api("/api/tags", { source: "cluster", top: 500 }).then(({ tags }) => {
      for (const tag of tags) clusterSelect.append(h("option", { value: tag.name, selected: tag.name === filters.cluster }, `${tag.name} · ${tag.count}`));
    }).catch(() => {});
  }

  clear(summary, spinner());
  try {
    const ids = filters.selection ? selection.ids.slice(offset, offset + PAGE) : null;
    const page = await api("/api/images", {
      offset: filters.selection ? 0 : offset,
      limit: PAGE,
      folder: filters.folder,
      tag: filters.tag,
      cluster: filters.cluster,
      ids: ids ? ids.join(",") : undefined,
    });
    const total = filters.selection ? selection.ids.length : page.total;
    const active = [filters.folder && `folder ${filters.folder}`, filters.tag && `tag ${filters.tag}`, filters.cluster && `cluster ${filters.cluster}`].filter(Boolean);
    clear(summary, h("h2", {}, `${total} image${total === 1 ? "" : "s"}`), active.length ? h("span", { class: "muted" }, active.join(", ")) : null);
    if (!page.items.length) {
      clear(grid, empty(info.images ? "No image passes these filters" : "The index is empty", info.images ? "Clear a filter to see more." : info.writable ? "Add images above." : "Add images with imagelearn index add, or serve with --writable."));
      return;
    }
    const reload = () => navigate("browse", { ...filtersParams(), offset });
    clear(grid, page.items.map((item) => card(item, {
      figures: distinctNames(item.tags).slice(0, 2).map((tag) => h("span", { class: "chip", dataset: { source: tag.source }, title: `${tag.source}: ${tag.score.toFixed(2)}` }, tag.name)),
      onOpen: () => openDetails(item.id, reload),
    })));
    if (total > PAGE) clear(footer, pager(offset, PAGE, total, (next) => navigate("browse", { ...filtersParams(), offset: next })));
  } catch (error) {
    clear(summary, errorBox(error.message));
  }
}

// An image's tags with one of each name (the best scored: the server sends them best first,
// all sources together), so a card never shows "daisy daisy".
function distinctNames(tags) {
  const seen = new Set();
  return tags.filter((tag) => !seen.has(tag.name.toLowerCase()) && seen.add(tag.name.toLowerCase()));
}
