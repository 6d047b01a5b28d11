// Selector autocomplete: label names after `{` or `,`, label values inside `name="…`, offered as
// whole-selector completions through a <datalist>. `completionContext` is pure and unit-tested.

import { fetchJSON } from "./api.js";

/** What the text before the caret is asking for: {kind: "value", name, head} | {kind: "name", head} | null. */
export function completionContext(text) {
  const v = /([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(text);
  if (v) return { kind: "value", name: v[1], head: text.slice(0, text.length - v[3].length) };
  const n = /(^|[{,])\s*([A-Za-z_][A-Za-z0-9_.]*)?$/.exec(text);
  if (n) {
    const head = text.slice(0, text.length - (n[2] || "").length);
    return { kind: "name", head: head === "" ? "{" : head };
  }
  return null;
}

/** Completions for a context from label names / values. */
export function completions(ctx, names, values) {
  if (!ctx) return [];
  if (ctx.kind === "value") return values.map((v) => `${ctx.head}${v}"}`);
  return names.map((n) => `${ctx.head}${n}="`);
}

const cache = { names: null, values: new Map() };

export function clearCache() {
  cache.names = null;
  cache.values.clear();
}

/** Refresh the datalist `list` for the selector `input` (best effort: errors leave it empty). */
export async function suggest(input, list, from, until) {
  const text = input.value.slice(0, input.selectionStart ?? input.value.length);
  const ctx = completionContext(text);
  const range = `from=${encodeURIComponent(from)}&until=${encodeURIComponent(until)}`;
  let opts = [];
  try {
    if (ctx && ctx.kind === "value" && !cache.values.has(ctx.name)) {
      const r = await fetchJSON(`/api/v1/labels/${encodeURIComponent(ctx.name)}/values?${range}`);
      cache.values.set(ctx.name, r.values || []);
    }
    if (ctx && ctx.kind === "name" && !cache.names) cache.names = (await fetchJSON(`/api/v1/labels?${range}`)).labels || [];
    opts = completions(ctx, cache.names || [], ctx && ctx.kind === "value" ? cache.values.get(ctx.name) : []);
  } catch { /* suggestions are best effort */ }
  list.replaceChildren(...opts.slice(0, 200).map((v) => {
    const o = document.createElement("option");
    o.value = v;
    return o;
  }));
}
