// One image's details: the image, its metadata and tags, "find similar", and removal when writable.

import { api, fileUrl, serverInfo } from "./api.js";
import { navigate } from "./main.js";
import { clear, errorBox, h, openDialog, spinner, toast } from "./ui.js";

const SIZE = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${Math.max(1, Math.round(n / 1024))} KiB`);

/** Open the details of image `id`; `onRemoved()` after a removal. */
export async function openDetails(id, onRemoved = null) {
  const body = openDialog(`Image ${id}`);
  body.append(spinner());
  let item;
  try {
    item = await api(`/api/images/${id}`);
  } catch (error) {
    clear(body, errorBox(error.message));
    return;
  }
  const info = await serverInfo();
  document.getElementById("dialog-title").textContent = item.path;
  const close = () => document.getElementById("dialog").close();
  const similar = h("button", { class: "button primary", type: "button", onclick: () => { close(); navigate("search", { id }); } }, "Find similar");
  const remove = info.writable
    ? h("button", {
      class: "button danger",
      type: "button",
      onclick: async () => {
        if (!confirm(`Remove ${item.path} from the index? The file stays on disk.`)) return;
        try {
          await api(`/api/images/${id}`, {}, { method: "DELETE" });
          toast(`Removed ${item.path}`);
          close();
          await serverInfo(true);
          if (onRemoved) onRemoved();
        } catch (error) {
          toast(error.message, "error");
        }
      },
    }, "Remove from index")
    : null;
  const tags = item.tags.length
    ? h("div", { class: "tags" }, item.tags.map((tag) => h("button", { class: "chip", type: "button", title: `${tag.source}: search this keyword`, onclick: () => { close(); navigate("search", { q: tag.name }); } }, `${tag.name} ${tag.score.toFixed(2)}`)))
    : h("span", { class: "muted" }, "no tags");
  const rows = [
    ["Path", item.path],
    ["Size", `${item.width}×${item.height} px, ${SIZE(item.bytes)}`],
    ["Features", String(item.n_features)],
    ["Added", item.added],
    ["Id", String(item.id)],
  ];
  clear(body, h("div", { class: "details" },
    h("img", { src: fileUrl(id), alt: item.path }),
    h("div", { class: "options" },
      h("dl", {}, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("div", { class: "field" }, "Tags", tags),
      h("div", { class: "row" }, similar, remove),
    ),
  ));
}
