// Duplicates: groups of near-identical images (same photo resized, recompressed, lightly edited).

import { api } from "../api.js";
import { openDetails } from "../details.js";
import { navigate } from "../main.js";
import { card, clear, empty, errorBox, gridKeys, h, spinner } from "../ui.js";

export const title = "Duplicates";

// Share of the smaller image's local features that must be verified (the API's default).
const DEFAULT_THRESHOLD = 0.25;

export async function mount(root, params) {
  const threshold = Math.min(0.9, Math.max(0.05, Number(params.get("threshold")) || DEFAULT_THRESHOLD));
  const slider = h("input", { type: "range", min: "0.05", max: "0.9", step: "0.01", value: String(threshold), "aria-label": "Share of features verified" });
  const shown = h("output", {}, threshold.toFixed(2));
  slider.addEventListener("input", () => { shown.textContent = Number(slider.value).toFixed(2); });
  slider.addEventListener("change", () => navigate("duplicates", { threshold: slider.value }));
  const summary = h("div", { class: "summary" }, spinner(), h("span", { class: "muted" }, "Finding near-duplicates…"));
  const groups = h("div", { class: "groups" });
  root.append(
    h("div", { class: "filters" },
      h("label", { class: "field" }, "Features verified, at least", h("div", { class: "row" }, slider, shown)),
      h("span", { class: "muted" }, "Copies of one picture (resized, re-encoded, cropped): this share of the smaller one's features match by a change of scale and position."),
    ),
    summary, groups,
  );
  try {
    const answer = await api("/api/duplicates", { threshold });
    const n = answer.groups.length;
    clear(summary, h("h2", {}, `${n} group${n === 1 ? "" : "s"}`), h("span", { class: "muted" }, `${answer.groups.reduce((a, g) => a + g.length, 0)} images, ≥ ${Math.round(threshold * 100)}% of features verified`));
    if (!n) {
      clear(groups, empty("No near-duplicates at this threshold", "Lower the threshold to find looser copies."));
      return;
    }
    clear(groups, answer.groups.map((group, i) => {
      const grid = h("div", { class: "grid" }, group.map((item) => card(item, { onOpen: () => openDetails(item.id) })));
      gridKeys(grid);
      return h("section", { class: "group" }, h("h3", {}, `Group ${i + 1} · ${group.length} images`), grid);
    }));
  } catch (error) {
    clear(summary, errorBox(error.message));
  }
}
