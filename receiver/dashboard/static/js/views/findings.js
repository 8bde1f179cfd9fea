// Findings: a filterable list, each linking to its process; live.

import { api, describeError } from "../api.js";
import { h, clear, panel, table } from "../dom.js";
import { count, findingKind, severityPill, shortUuid, time } from "../format.js";
import { FINDING_KINDS, fetchFindings, isOpen, processLink } from "../findings-data.js";
import { follow } from "../sse.js";

const SEVERITIES = ["critical", "high", "medium", "low", "info"];

export function mount(root, _params, query, ctx) {
  const controller = new AbortController();
  const filters = { vm: query.get("vm") || "", kind: query.get("kind") || "", severity: query.get("severity") || "", since: query.get("since") || "", q: query.get("q") || "" };
  const vmSelect = h("select", { id: "findings-vm" }, h("option", { value: "" }, "All VMs"));
  const kindSelect = h("select", { id: "findings-kind" }, h("option", { value: "" }, "All kinds"), FINDING_KINDS.map((k) => h("option", { value: k, selected: k === filters.kind }, findingKind(k))));
  const sevSelect = h("select", { id: "findings-severity" }, h("option", { value: "" }, "Any severity"), SEVERITIES.map((s) => h("option", { value: s, selected: s === filters.severity }, s)));
  const sinceSelect = h("select", { id: "findings-since" }, [["", "Any time"], ["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"]].map(([v, l]) => h("option", { value: v, selected: v === filters.since }, l)));
  const text = h("input", { type: "search", placeholder: "Filter details, uuid…", id: "findings-text", value: filters.q });
  const body = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const countBox = h("span");
  const liveBox = h("span", { class: "muted", id: "findings-live" });
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Findings"), h("span", { class: "sub" }, countBox), h("span", { class: "spacer" }), liveBox),
    h("div", { class: "toolbar" }, vmSelect, kindSelect, sevSelect, sinceSelect, text),
    panel("Detections", body, { id: "findings-panel" }),
  );
  let items = [];

  function sinceIso() {
    const spans = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
    return filters.since ? new Date(Date.now() - spans[filters.since]).toISOString() : "";
  }

  function render() {
    const needle = filters.q.toLowerCase();
    const shown = items
      .filter((f) => !filters.severity || (f.severity || "").toLowerCase() === filters.severity)
      .filter((f) => !needle || JSON.stringify(f).toLowerCase().includes(needle))
      .sort((a, b) => String(b.at).localeCompare(String(a.at)));
    countBox.textContent = `${count(shown.length)} shown · ${count(items.filter(isOpen).length)} open`;
    clear(body).append(table([
      { label: "Severity", render: (f) => severityPill(f.severity) },
      { label: "Kind", render: (f) => h("span", { class: "finding-kind" }, findingKind(f.kind)) },
      { label: "VM", render: (f) => h("a", { href: `#/vm/${encodeURIComponent(f.vm)}` }, f.vm) },
      { label: "Process", render: (f) => (processLink(f) ? h("a", { class: "mono process-link", href: processLink(f) }, shortUuid(f.process_uuid)) : "—") },
      { label: "Details", wrap: true, render: (f) => details(f) },
      { label: "At", render: (f) => time(f.at) },
    ], shown, {
      empty: items.length ? "No finding matches these filters." : "No findings. Detections appear here as they happen.",
      onRow: (f) => processLink(f) && (location.hash = processLink(f)),
      rowClass: () => "finding-row",
    }));
  }

  function details(f) {
    const d = f.details || {};
    const parts = [];
    const subject = d.binary || d.path;
    if (subject) parts.push(h("span", { class: "mono" }, subject));
    if (d.argv && d.argv.length > 1) parts.push(" ", h("span", { class: "mono muted" }, d.argv.slice(1).join(" ")));
    if (d.remote) parts.push(h("span", { class: "mono bad" }, ` ⇄ ${endpoint(d.remote)}`));
    if (d.written_by_uuid) parts.push(h("span", { class: "muted" }, " · written by "), h("a", { class: "mono", href: `#/vm/${encodeURIComponent(f.vm)}/process/${d.written_by_uuid}` }, shortUuid(d.written_by_uuid)));
    if (d.parent_binary) parts.push(h("span", { class: "muted" }, ` · parent ${d.parent_binary}`));
    const c = d.container;
    if (c && typeof c === "object") parts.push(h("span", { class: "muted" }, ` · ${c.pod_namespace ?? "?"}/${c.pod_name ?? "?"}/${c.container_name ?? "?"}`));
    const shown = ["binary", "path", "argv", "remote", "local", "written_by_uuid", "parent_binary", "parent_uuid", "container", "layer"];
    const rest = Object.entries(d).filter(([k]) => !shown.includes(k));
    if (rest.length) parts.push(h("span", { class: "faint mono" }, " " + rest.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")));
    return parts.length ? parts : h("span", { class: "faint" }, "—");
  }

  function endpoint(a) {
    if (typeof a !== "object") return String(a);
    return `${String(a.ip).includes(":") ? `[${a.ip}]` : a.ip}:${a.port}`;
  }

  async function load() {
    const result = await fetchFindings({ vm: filters.vm, kind: filters.kind, since: sinceIso() }, controller.signal).catch(() => null);
    if (!result) return;
    if (!result.available) {
      countBox.textContent = "";
      clear(body).append(h("div", { class: "unavailable", id: "findings-unavailable" }, describeError(result.error, "Findings are")));
      return;
    }
    items = result.items;
    render();
  }

  function onFilter() {
    filters.vm = vmSelect.value;
    filters.kind = kindSelect.value;
    filters.severity = sevSelect.value;
    filters.since = sinceSelect.value;
    filters.q = text.value.trim();
    ctx.replaceQuery(filters);
  }
  for (const select of [vmSelect, kindSelect, sinceSelect]) select.addEventListener("change", () => { onFilter(); load(); });
  sevSelect.addEventListener("change", () => { onFilter(); render(); });
  text.addEventListener("input", () => { onFilter(); render(); });

  api("/api/v1/vms", { signal: controller.signal, query: { limit: 1000 } }).then(({ items: vms }) => {
    for (const vm of vms) vmSelect.append(h("option", { value: vm.name, selected: vm.name === filters.vm }, vm.name));
  }).catch(() => {});
  load();
  const stop = follow("/api/v1/stream?kind=finding", {
    onMessage: (m) => { if (m.event === "finding") load(); },
    onState: (s) => { liveBox.textContent = s === "open" ? "● live" : s === "missing" ? "live updates not available" : s === "down" ? "live updates reconnecting…" : ""; },
  });
  return () => { controller.abort(); stop(); };
}
