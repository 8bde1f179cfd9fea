// One VM: boots, containers, exec sessions, findings, counters, configuration.

import { api, describeError } from "../api.js";
import { h, clear, panel, table, pill } from "../dom.js";
import { ago, bytes, count, findingKind, severityPill, shortUuid, sumValues, time } from "../format.js";
import { fetchFindings, processLink } from "../findings-data.js";
import { healthPill, gapsOf } from "./fleet.js";
import { configPanel } from "./config.js";

const POLL_MS = 3000;

export function mount(root, [name], _query, ctx) {
  const controller = new AbortController();
  const vmPath = `/api/v1/vms/${encodeURIComponent(name)}`;
  const head = h("div");
  const stats = h("div", { class: "stats", id: "vm-stats" });
  const left = h("div", { class: "stack" });
  const right = h("div", { class: "stack" });
  root.append(head, stats, h("div", { class: "grid two" }, left, right));

  const containersBody = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const sessionsBody = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const findingsBody = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const bootsBody = h("div");
  const countersBody = h("div");
  const config = configPanel(name, ctx, controller.signal);
  left.append(
    panel("Containers", containersBody, { id: "vm-containers" }),
    panel("Exec sessions", sessionsBody, { id: "vm-exec-sessions" }),
    panel("Recent findings", findingsBody, { id: "vm-findings", actions: h("a", { href: `#/findings?vm=${encodeURIComponent(name)}` }, "All findings →") }),
  );
  right.append(config.node, panel("Boots", bootsBody, { id: "vm-boots" }), panel("Counters", countersBody, { id: "vm-counters", flush: false }));

  let containers = [];

  function renderVm(vm) {
    clear(head).append(
      h("div", { class: "crumbs" }, h("a", { href: "#/fleet" }, "Fleet"), " / ", name),
      h("div", { class: "page-head" },
        h("h1", null, vm.name), healthPill(vm),
        vm.protocol ? pill(vm.protocol, "info") : null,
        h("span", { class: "sub mono" }, `${vm.transport} ${vm.address ?? ""}`),
        h("span", { class: "sub" }, `heartbeat ${ago(vm.last_heartbeat)}`),
        h("span", { class: "spacer" }),
        h("a", { class: "btn", href: `#/vm/${encodeURIComponent(name)}/tree`, id: "open-tree" }, "Process tree"),
      ),
    );
    const c = vm.counters;
    clear(stats).append(
      stat("Frames", count(c?.frames)), stat("Received", bytes(c?.bytes)), stat("Events", count(c?.events)),
      stat("Heartbeats", count(c?.heartbeats)), stat("Dropped", count(sumValues(c?.drops)), sumValues(c?.drops) ? "bad" : ""),
      stat("Gaps", gapsOf(c) === null ? "—" : count(gapsOf(c))), stat("Decode errors", count(c?.decode_errors), c?.decode_errors ? "bad" : ""),
    );
    clear(bootsBody).append(table(
      [
        { label: "Boot", render: (b) => h("span", { class: "mono" }, b.boot) },
        { label: "First seen", render: (b) => time(b.first_seen) },
        { label: "Last seen", render: (b) => time(b.last_seen) },
      ],
      [...(vm.boots || [])].reverse(),
      { empty: "No boot seen yet." },
    ));
    clear(countersBody).append(countersList(c));
    config.setLastAnswer(vm.config_response);
  }

  async function loadVm() {
    try {
      renderVm(await api(vmPath, { signal: controller.signal }));
    } catch (err) {
      if (err.name === "AbortError") return;
      if (!head.childElementCount || err.kind === "missing") clear(head).append(h("div", { class: "error-line" }, describeError(err)));
    }
  }

  async function loadLists() {
    try {
      containers = (await api(`${vmPath}/containers`, { signal: controller.signal, query: { limit: 1000 } })).items;
      clear(containersBody).append(table(
        [
          { label: "Pod", render: (c) => (c.pod_name ? h("span", null, h("span", { class: "muted" }, `${c.pod_namespace}/`), c.pod_name) : h("span", { class: "faint" }, "—")) },
          { label: "Container", render: (c) => c.container_name || h("span", { class: "faint" }, `#${c.container_id}`) },
          { label: "Image", wrap: true, render: (c) => h("span", { class: "mono" }, c.image || "—") },
          { label: "Boot", render: (c) => h("span", { class: "mono muted" }, c.boot) },
          { label: "", render: (c) => h("a", { href: `#/vm/${encodeURIComponent(name)}/tree?container=${c.container_id}` }, "tree →") },
        ],
        containers,
        { empty: "No containers reported." },
      ));
    } catch (err) {
      if (err.name !== "AbortError") clear(containersBody).append(h("div", { class: "error-line" }, describeError(err, "Containers are")));
    }
    try {
      const sessions = (await api(`${vmPath}/exec-sessions`, { signal: controller.signal, query: { limit: 1000 } })).items;
      const containerName = (id) => {
        const c = containers.find((x) => x.container_id === id);
        return c ? `${c.pod_name || "?"}/${c.container_name || id}` : `#${id}`;
      };
      clear(sessionsBody).append(table(
        [
          { label: "Session", render: (s) => h("span", { class: "mono" }, String(s.exec_session_id)) },
          { label: "Container", render: (s) => containerName(s.container_id) },
          { label: "Started", render: (s) => time(s.started_at) },
          { label: "Processes", num: true, render: (s) => count(s.processes.length) },
          { label: "First process", render: (s) => (s.processes[0] ? h("a", { class: "mono", href: `#/vm/${encodeURIComponent(name)}/process/${s.processes[0]}` }, shortUuid(s.processes[0])) : "—") },
        ],
        sessions,
        { empty: "No exec sessions (kubectl exec and the like) seen." },
      ));
    } catch (err) {
      if (err.name !== "AbortError") clear(sessionsBody).append(h("div", { class: "error-line" }, describeError(err, "Exec sessions are")));
    }
    const result = await fetchFindings({ vm: name }, controller.signal).catch(() => null);
    if (!result) return;
    if (!result.available) {
      clear(findingsBody).append(h("div", { class: "unavailable" }, describeError(result.error, "Findings are")));
      return;
    }
    const recent = [...result.items].sort((a, b) => String(b.at).localeCompare(String(a.at))).slice(0, 20);
    clear(findingsBody).append(table(
      [
        { label: "Severity", render: (f) => severityPill(f.severity) },
        { label: "Kind", render: (f) => findingKind(f.kind) },
        { label: "Process", render: (f) => (processLink(f) ? h("a", { class: "mono", href: processLink(f) }, shortUuid(f.process_uuid)) : "—") },
        { label: "At", render: (f) => time(f.at) },
      ],
      recent,
      { empty: "No findings for this VM.", onRow: (f) => processLink(f) && (location.hash = processLink(f)) },
    ));
  }

  loadVm();
  loadLists();
  config.load();
  const timer = setInterval(loadVm, POLL_MS);
  return () => {
    clearInterval(timer);
    controller.abort();
  };
}

function stat(label, value, kind = "") {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: `value ${kind}`.trim() }, value));
}

function countersList(counters) {
  if (!counters) return h("div", { class: "empty" }, "No live counters: the VM is not registered in this receiver process.");
  const rows = [];
  for (const [key, value] of Object.entries(counters)) {
    if (value && typeof value === "object") {
      for (const [cause, n] of Object.entries(value)) rows.push([`${key} · ${cause.replaceAll("_", " ")}`, n]);
    } else rows.push([key.replaceAll("_", " "), value]);
  }
  return h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", { class: v && /drop|error/.test(k) ? "bad" : null }, count(v))]));
}
