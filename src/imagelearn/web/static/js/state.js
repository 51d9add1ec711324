// What pages hand to one another: the map's selection, shown by the browse page.

export const selection = { ids: [], label: "" };

export function select(ids, label) {
  selection.ids = ids;
  selection.label = label;
}
