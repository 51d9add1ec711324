// Words: what the visual words of a BoF run look like. The words its SVM weighs most, each a
// montage of the image patches nearest to it; an image of the run with its word histogram and
// its strongest words outlined on it. Route: #/words?run=NAME&channel=0&word=W&image=N.

import { api } from "../api.js";
import { navigate } from "../main.js";
import { clear, empty, errorBox, formatScore, h, spinner } from "../ui.js";

export const title = "Words";

const query = (params) => new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();

export async function mount(root, params) {
  const { runs } = await api("/api/words/runs");
  if (!runs.length) {
    root.append(empty("No BoF runs", "Start the server with --review RUN_DIR on a run of 'imagelearn bof train'."));
    return;
  }
  const run = params.get("run") || runs[0].name;
  const channel = params.get("channel") || "0";
  const go = (changes) => navigate("words", { run, channel, word: params.get("word"), image: params.get("image"), ...changes });
  const runSelect = h("select", { "aria-label": "Run", onchange: () => navigate("words", { run: runSelect.value }) },
    runs.map((item) => h("option", { value: item.name, selected: item.name === run }, item.name)));
  const channelSelect = h("select", { "aria-label": "Channel", onchange: () => go({ channel: channelSelect.value, word: null }) });
  const imageSelect = h("select", { "aria-label": "Image", onchange: () => go({ image: imageSelect.value }) });
  const status = h("div", { class: "summary" }, spinner(), h("span", { class: "muted" }, "Finding each word's patches in the run's images…"));
  const words = h("div", { class: "grid words-grid", style: "--cell: 120px" });
  const montage = h("section", { class: "panel" });
  const picture = h("section", { class: "panel" });
  root.append(
    h("div", { class: "filters row" },
      h("label", { class: "field" }, "Run", runSelect),
      h("label", { class: "field" }, "Channel", channelSelect),
      h("label", { class: "field" }, "Image", imageSelect)),
    status, words, montage, picture,
  );

  let data;
  try {
    data = await api("/api/words/run", { run, channel, top: 48 });
  } catch (error) {
    clear(status, errorBox(error.message));
    return;
  }
  clear(channelSelect, data.channels.map((item) => h("option", { value: item.index, selected: item.index === data.channel }, `${item.index}: ${item.detector} (${item.n_words} words)`)));
  clear(imageSelect, h("option", { value: "" }, "—"), data.images.map((name, number) => h("option", { value: number, selected: String(number) === params.get("image") }, `${number}: ${name}`)));
  clear(status, h("h2", {}, `${data.words.length} words of largest SVM weight`),
    h("span", { class: "muted" }, `patches from ${data.sample_images} of the run's ${data.n_images} images; classes ${data.classes.join(", ")}`));
  clear(words, data.words.map((item) => h("button", {
    class: `card${String(item.word) === params.get("word") ? " selected" : ""}`, type: "button",
    dataset: { word: item.word }, onclick: () => go({ word: item.word }),
  }, h("div", { class: "meta" },
    h("span", { class: "name" }, `word ${item.word}`),
    h("span", { class: "figures" }, `weight ${formatScore(item.svm_weight)}`, h("span", { class: "badge" }, `${item.occurrences} patches`))))));

  const word = params.get("word") ?? (data.words.length ? String(data.words[0].word) : null);
  if (word !== null) {
    montage.append(h("h3", {}, `Word ${word}: the patches nearest to it`),
      h("img", { src: `/api/words/montage?${query({ run, channel: data.channel, word })}`, alt: `Patches of word ${word}`, style: "max-width: 100%; display: block; margin: 8px 0" }));
  }
  const image = params.get("image");
  if (image !== null && image !== "") {
    try {
      const answer = await api("/api/words/image", { run, image, channel: data.channel, top: 5 });
      picture.append(h("h3", {}, `${answer.image}: its strongest words`),
        h("img", { src: `/api/words/image.png?${query({ run, image, channel: data.channel, top: 5 })}`, alt: `${answer.image} with its strongest words outlined`, style: "max-width: 100%; display: block; margin: 8px 0" }),
        h("ol", { class: "top-words" }, answer.top_words.map((top) => h("li", {},
          h("button", { class: "button", type: "button", onclick: () => go({ word: top.word }) }, `word ${top.word}`),
          ` ${formatScore(top.weight)} of the histogram, ${top.patches.length} patches`))));
    } catch (error) {
      picture.append(errorBox(error.message));
    }
  }
}
