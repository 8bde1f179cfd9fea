// Process tree explorer: virtualised rows, search, and a time control (at=).

import { api, describeError } from "../api.js";
import { h, clear } from "../dom.js";
import { count, time } from "../format.js";

const ROW_H = 24;
const OVERSCAN = 12;
const AUTO_EXPAND_ALL = 400;
const AUTO_EXPAND_DEPTH = 2;
const SLIDER_STEPS = 1000;

export const fill = true;

/** The tree model: nodes by uuid, children in start order, roots. */
export function buildModel(payload) {
  const byUuid = new Map();
  for (const p of payload.items) byUuid.set(p.uuid, { p, kids: [], parent: null, depth: 0, text: null });
  const roots = [];
  const rootSet = new Set(payload.roots || []);
  for (const node of byUuid.values()) {
    const parent = node.p.parent_uuid ? byUuid.get(node.p.parent_uuid) : null;
    if (parent && !rootSet.has(node.p.uuid)) {
      node.parent = parent;
      parent.kids.push(node);
    } else roots.push(node);
  }
  const byStart = (a, b) => (a.p.started_at < b.p.started_at ? -1 : a.p.started_at > b.p.started_at ? 1 : a.p.pid - b.p.pid);
  roots.sort(byStart);
  const stack = [...roots];
  while (stack.length) {
    const node = stack.pop();
    node.kids.sort(byStart);
    for (const kid of node.kids) {
      kid.depth = node.depth + 1;
      stack.push(kid);
    }
  }
  return { byUuid, roots, size: byUuid.size };
}

function searchText(node) {
  if (node.text === null) node.text = `${node.p.binary || ""}\u0000${(node.p.argv || []).join(" ")}`.toLowerCase();
  return node.text;
}

/** The rows on screen, in order: expanded nodes, or matches and their ancestors. */
export function flatten(model, expanded, matches) {
  const rows = [];
  const stack = [];
  for (let i = model.roots.length - 1; i >= 0; i -= 1) stack.push(model.roots[i]);
  while (stack.length) {
    const node = stack.pop();
    if (matches && !matches.keep.has(node)) continue;
    rows.push(node);
    const open = matches ? true : expanded.has(node.p.uuid);
    if (!open) continue;
    for (let i = node.kids.length - 1; i >= 0; i -= 1) stack.push(node.kids[i]);
  }
  return rows;
}

function findMatches(model, needle) {
  const hits = new Set();
  const keep = new Set();
  for (const node of model.byUuid.values()) {
    if (!searchText(node).includes(needle)) continue;
    hits.add(node);
    for (let n = node; n && !keep.has(n); n = n.parent) keep.add(n);
  }
  return { hits, keep };
}

function highlight(text, needle) {
  if (!needle || !text) return text || "";
  const lower = text.toLowerCase();
  const parts = [];
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, at)) {
    parts.push(text.slice(at, i), h("mark", null, text.slice(i, i + needle.length)));
    at = i + needle.length;
  }
  parts.push(text.slice(at));
  return parts;
}

function toLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function mount(root, [vmName], query, ctx) {
  const controller = new AbortController();
  const vmHref = `#/vm/${encodeURIComponent(vmName)}`;
  const state = {
    container: query.get("container") || "",
    at: query.get("at") || "",
    q: (query.get("q") || "").trim(),
    model: null,
    rows: [],
    expanded: new Set(),
    matches: null,
    selected: null,
    range: null,
    loadedMs: null,
  };

  const containerSelect = h("select", { id: "tree-container", title: "Show one container's processes" }, h("option", { value: "" }, "All processes"));
  const search = h("input", { type: "search", id: "tree-search", placeholder: "Search binary or argv…", value: state.q, autocomplete: "off", spellcheck: "false", style: "width:240px" });
  const atInput = h("input", { type: "datetime-local", id: "tree-at", step: "1", title: "Show what was alive at this moment (local time)" });
  const slider = h("input", { type: "range", id: "tree-slider", min: 0, max: SLIDER_STEPS, value: SLIDER_STEPS, style: "width:200px", title: "Drag to move through time" });
  const nowButton = h("button", { class: "btn", type: "button", id: "tree-now" }, "Now");
  const expandAll = h("button", { class: "btn", type: "button", id: "tree-expand-all" }, "Expand all");
  const collapseAll = h("button", { class: "btn", type: "button", id: "tree-collapse-all" }, "Collapse");
  const atLabel = h("span", { class: "pill", id: "tree-at-label" }, "alive now and exited");
  const status = h("span", { id: "tree-status" });
  const scroller = h("div", { class: "tree-scroll", id: "tree-scroll", tabindex: "0" });
  const sizer = h("div", { class: "tree-sizer" });
  const rowsBox = h("div", { class: "tree-rows", id: "tree-rows" });
  const message = h("div");
  scroller.append(sizer, rowsBox);

  root.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/fleet" }, "Fleet"), " / ", h("a", { href: vmHref }, vmName), " / process tree"),
    h("div", { class: "page-head" }, h("h1", null, "Process tree"), h("span", { class: "sub" }, vmName), atLabel),
    h("div", { class: "toolbar" },
      containerSelect, search,
      h("span", { class: "spacer" }),
      h("label", null, "at", atInput), slider, nowButton,
      expandAll, collapseAll,
    ),
    message,
    h("section", { class: "panel tree-panel" },
      h("div", { class: "tree-head" }, h("div", null, "Process"), h("div", null, "PID"), h("div", null, "Started"), h("div", null, "Exited"), h("div", null, "Flags")),
      scroller,
      h("div", { class: "tree-foot" }, status),
    ),
  );

  // Rendering: only the rows in view (plus a margin) exist in the DOM.
  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; paint(); });
  }

  function paint() {
    const total = state.rows.length;
    sizer.style.height = `${total * ROW_H}px`;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW_H) + OVERSCAN);
    rowsBox.style.transform = `translateY(${first * ROW_H}px)`;
    const needle = state.matches ? state.q.toLowerCase() : "";
    const out = [];
    for (let i = first; i < last; i += 1) out.push(renderRow(state.rows[i], needle));
    rowsBox.replaceChildren(...out);
  }

  function renderRow(node, needle) {
    const p = node.p;
    const hasKids = node.kids.length > 0;
    const open = state.matches ? true : state.expanded.has(p.uuid);
    const classes = ["tree-row"];
    if (p.exited_at) classes.push("exited");
    if (state.matches?.hits.has(node)) classes.push("match");
    if (state.selected === p.uuid) classes.push("selected");
    const args = (p.argv || []).slice(1).join(" ");
    const flags = [];
    if (p.binary_layer === "added" || p.binary_layer === "modified") flags.push(h("span", { class: "pill bad flag" }, p.binary_layer));
    if (p.exec_session_id) flags.push(h("span", { class: "pill warn flag" }, `exec ${p.exec_session_id}`));
    if (p.container_id) flags.push(h("span", { class: "pill flag" }, `ctr ${p.container_id}`));
    return h("div", { class: classes.join(" "), dataset: { uuid: p.uuid } },
      h("div", { class: "name", style: `padding-left:${8 + node.depth * 16}px` },
        h("span", { class: hasKids ? "toggle" : "toggle leaf", dataset: { toggle: p.uuid }, title: hasKids ? (open ? "Collapse" : "Expand") : null }, hasKids ? (open ? "▾" : "▸") : ""),
        h("a", { class: "bin", href: `${vmHref}/process/${p.uuid}` }, highlight(p.binary || "(unknown)", needle)),
        args ? h("span", { class: "args" }, " ", highlight(args, needle)) : null,
        hasKids && !open ? h("span", { class: "kids" }, ` (${node.kids.length})`) : null,
      ),
      h("div", { class: "mono" }, String(p.pid)),
      h("div", { class: "mono muted", title: time(p.started_at) }, time(p.started_at).slice(11)),
      h("div", { class: "mono muted", title: p.exited_at ? time(p.exited_at) : null }, p.exited_at ? time(p.exited_at).slice(11) : h("span", { class: "ok" }, "alive")),
      h("div", null, flags),
    );
  }

  function relayout({ keepScroll = true } = {}) {
    if (!state.model) return;
    const started = performance.now();
    state.rows = flatten(state.model, state.expanded, state.matches);
    if (!keepScroll) scroller.scrollTop = 0;
    paint();
    const ms = performance.now() - started;
    const bits = [`${count(state.model.size)} processes`, `${count(state.rows.length)} rows shown`];
    if (state.matches) bits.push(`${count(state.matches.hits.size)} match “${state.q}”`);
    if (state.truncated) bits.push("truncated by the receiver");
    bits.push(`laid out in ${ms.toFixed(1)} ms`);
    status.textContent = bits.join(" · ");
    root.dataset.layoutMs = ms.toFixed(2);
    root.dataset.rows = String(state.rows.length);
  }

  function applySearch() {
    const needle = state.q.toLowerCase();
    state.matches = needle && state.model ? findMatches(state.model, needle) : null;
    relayout({ keepScroll: false });
  }

  function defaultExpansion(model) {
    const expanded = new Set();
    const all = model.size <= AUTO_EXPAND_ALL;
    for (const node of model.byUuid.values()) if (all || node.depth < AUTO_EXPAND_DEPTH) expanded.add(node.p.uuid);
    return expanded;
  }

  function syncQuery() {
    ctx.replaceQuery({ container: state.container, at: state.at, q: state.q });
  }

  function showAt() {
    if (state.at) {
      atLabel.textContent = `alive at ${time(state.at)}`;
      atLabel.className = "pill warn";
      atInput.value = toLocalInput(state.at);
    } else {
      atLabel.textContent = "alive now and exited";
      atLabel.className = "pill";
      atInput.value = "";
    }
  }

  async function load() {
    clear(message);
    status.textContent = "Loading…";
    const started = performance.now();
    let payload;
    try {
      payload = await api(`/api/v1/vms/${encodeURIComponent(vmName)}/tree`, {
        signal: controller.signal,
        query: { container_id: state.container, at: state.at },
      });
    } catch (err) {
      if (err.name === "AbortError") return;
      status.textContent = "";
      message.append(h("div", { class: "error-line" }, describeError(err, "The process tree is")));
      return;
    }
    const fetched = performance.now();
    const previous = state.model;
    state.model = buildModel(payload);
    state.truncated = payload.truncated;
    if (!previous) state.expanded = defaultExpansion(state.model);
    else for (const node of state.model.byUuid.values()) if (!previous.byUuid.has(node.p.uuid) && node.depth < AUTO_EXPAND_DEPTH) state.expanded.add(node.p.uuid);
    if (!state.at && !state.range && payload.items.length) {
      let min = Infinity;
      for (const p of payload.items) min = Math.min(min, new Date(p.started_at).getTime());
      state.range = { min, max: Date.now() };
    }
    state.matches = state.q ? findMatches(state.model, state.q.toLowerCase()) : null;
    relayout({ keepScroll: Boolean(previous) });
    root.dataset.fetchMs = (fetched - started).toFixed(1);
    root.dataset.loaded = String(Date.now());
  }

  async function loadContainers() {
    try {
      const { items } = await api(`/api/v1/vms/${encodeURIComponent(vmName)}/containers`, { signal: controller.signal, query: { limit: 1000 } });
      for (const c of items) {
        const label = c.pod_name ? `${c.pod_namespace}/${c.pod_name} · ${c.container_name || c.container_id}` : `container ${c.container_id}`;
        containerSelect.append(h("option", { value: String(c.container_id), selected: String(c.container_id) === state.container }, label));
      }
    } catch (err) {
      if (err.name !== "AbortError") containerSelect.title = describeError(err, "Containers are");
    }
  }

  // Interaction.
  scroller.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);
  rowsBox.addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-toggle]");
    const row = event.target.closest(".tree-row");
    if (!row) return;
    state.selected = row.dataset.uuid;
    if (toggle && !toggle.classList.contains("leaf") && !state.matches) {
      const uuid = toggle.dataset.toggle;
      if (state.expanded.has(uuid)) state.expanded.delete(uuid);
      else state.expanded.add(uuid);
      relayout();
      return;
    }
    if (!event.target.closest("a")) schedule();
  });
  rowsBox.addEventListener("dblclick", (event) => {
    const row = event.target.closest(".tree-row");
    if (row) location.hash = `${vmHref}/process/${row.dataset.uuid}`;
  });
  scroller.addEventListener("keydown", (event) => {
    const index = state.rows.findIndex((n) => n.p.uuid === state.selected);
    const move = (to) => {
      const clamped = Math.max(0, Math.min(state.rows.length - 1, to));
      state.selected = state.rows[clamped]?.p.uuid ?? null;
      const top = clamped * ROW_H;
      if (top < scroller.scrollTop) scroller.scrollTop = top;
      else if (top + ROW_H > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_H - scroller.clientHeight;
      schedule();
    };
    if (event.key === "ArrowDown") move(index + 1);
    else if (event.key === "ArrowUp") move(index - 1);
    else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && state.selected && !state.matches) {
      if (event.key === "ArrowRight") state.expanded.add(state.selected);
      else state.expanded.delete(state.selected);
      relayout();
    } else if (event.key === "Enter" && state.selected) location.hash = `${vmHref}/process/${state.selected}`;
    else return;
    event.preventDefault();
  });
  let searchTimer = 0;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = search.value.trim();
      syncQuery();
      applySearch();
    }, 120);
  });
  containerSelect.addEventListener("change", () => {
    state.container = containerSelect.value;
    state.model = null;
    state.range = null;
    syncQuery();
    load();
  });
  function setAt(iso) {
    state.at = iso;
    showAt();
    syncQuery();
    load();
  }
  atInput.addEventListener("change", () => {
    if (!atInput.value) return setAt("");
    const date = new Date(atInput.value);
    if (!Number.isNaN(date.getTime())) setAt(date.toISOString());
  });
  let sliderTimer = 0;
  slider.addEventListener("input", () => {
    if (!state.range) return;
    const value = Number(slider.value);
    const when = state.range.min + ((state.range.max - state.range.min) * value) / SLIDER_STEPS;
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(() => setAt(value >= SLIDER_STEPS ? "" : new Date(when).toISOString()), 200);
  });
  nowButton.addEventListener("click", () => {
    slider.value = String(SLIDER_STEPS);
    setAt("");
  });
  expandAll.addEventListener("click", () => {
    if (!state.model) return;
    for (const node of state.model.byUuid.values()) if (node.kids.length) state.expanded.add(node.p.uuid);
    relayout();
  });
  collapseAll.addEventListener("click", () => {
    if (!state.model) return;
    state.expanded = new Set(state.model.roots.map((n) => n.p.uuid));
    relayout({ keepScroll: false });
  });

  showAt();
  loadContainers();
  load();
  return () => {
    controller.abort();
    cancelAnimationFrame(frame);
    window.removeEventListener("resize", schedule);
  };
}
