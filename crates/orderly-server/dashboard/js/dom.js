// Building DOM nodes, escaped by construction: text goes in as text nodes,
// attributes through setAttribute, never through innerHTML. Everything the
// dashboard shows from job data (payload, key, error, result, worker)
// passes through here, so `<script>` in a payload is shown as the text it is.

/**
 * h("a", {href: "/x", class: "btn", onclick: fn}, "text", child, [more])
 * Strings and numbers become text nodes; null/undefined/false are skipped;
 * arrays are flattened. `on…` keys add event listeners; `dataset` sets
 * data-* attributes; other keys become attributes (true: present, false or
 * null: absent).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    tag === "svg" || SVG_TAGS.has(tag) ? SVG_NS : HTML_NS,
    tag,
  );
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "dataset") {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (strings as text) to `el`. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** JSON of any value, pretty, as text for a <pre>. */
export function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

const HTML_NS = "http://www.w3.org/1999/xhtml";
const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["rect", "line", "polyline", "path", "text", "g", "title", "circle"]);
