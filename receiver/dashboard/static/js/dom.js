// Building DOM nodes without innerHTML: guest strings always become text.

export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      // Through the CSSOM: the page's policy forbids style attributes.
      else if (key === "style") node.style.cssText = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function panel(title, body, { count, actions, flush = true, id } = {}) {
  return h(
    "section",
    { class: "panel", id },
    h("header", null, h("h2", null, title), count !== undefined ? h("span", { class: "count" }, count) : null, h("span", { class: "spacer" }), actions),
    h("div", { class: flush ? "body flush" : "body" }, body),
  );
}

export function table(columns, rows, { onRow, rowClass, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("div", { class: "empty" }, empty);
  const head = h("tr", null, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => {
    const tr = h(
      "tr",
      { class: [onRow ? "clickable" : "", rowClass ? rowClass(row) : ""].join(" ").trim() || null },
      columns.map((c) => h("td", { class: [c.num ? "num" : "", c.wrap ? "wrap" : "", c.nowrap ? "nowrap" : ""].join(" ").trim() || null }, c.render(row))),
    );
    if (onRow) tr.addEventListener("click", (event) => {
      if (event.target.closest("a, button, input")) return;
      onRow(row, event);
    });
    return tr;
  });
  return h("table", { class: "data" }, h("thead", null, head), h("tbody", null, body));
}

export function pill(text, kind) {
  return h("span", { class: `pill ${kind || ""}`.trim() }, text);
}
