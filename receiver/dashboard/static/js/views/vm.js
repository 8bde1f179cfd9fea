// One VM: boots, containers, exec sessions, findings, counters, configuration.

import { api, describeError, listAll } from "../api.js";
import { append, h, clear, panel, table } from "../dom.js";
import { ago, bytes, count, findingKind, severityPill, shortUuid, time } from "../format.js";
import { fetchFindings, processLink } from "../findings-data.js";
import { healthPill, protocolPill } from "./fleet.js";
import { configPanel } from "./config.js";
import { causeHelp, causeLabel, dropsOf, gapTotals, gapsByCause, describeLost } from "../delivery.js";

const POLL_MS = 3000;
const GAPS_SHOWN = 100;

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
  const gapsBody = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const gapsCount = h("span", { class: "count", id: "vm-gaps-count" });
  const bootsBody = h("div");
  const countersBody = h("div");
  const config = configPanel(name, ctx, controller.signal);
  left.append(
    panel("Containers", containersBody, { id: "vm-containers" }),
    panel("Exec sessions", sessionsBody, { id: "vm-exec-sessions" }),
    panel("Recent findings", findingsBody, { id: "vm-findings", actions: h("a", { href: `#/findings?vm=${encodeURIComponent(name)}` }, "All findings →") }),
    panel("Gaps", gapsBody, { id: "vm-gaps", count: gapsCount }),
  );
  right.append(config.node, panel("Boots", bootsBody, { id: "vm-boots" }), panel("Counters and delivery", countersBody, { id: "vm-counters", flush: false }));

  let containers = [];
  let gapsSeen = null;

  function renderVm(vm) {
    clear(head).append(
      h("div", { class: "crumbs" }, h("a", { href: "#/fleet" }, "Fleet"), " / ", name),
      h("div", { class: "page-head" },
        h("h1", null, vm.name), healthPill(vm),
        h("span", { id: "vm-protocol" }, protocolPill(vm, vm.delivery)),
        h("span", { class: "sub" }, "on ", h("span", { class: "mono host", id: "vm-host" }, vm.host || "?")),
        h("span", { class: "sub mono", title: vm.address ?? "" }, `${vm.transport} ${vm.address ?? ""}`),
        h("span", { class: "sub" }, `heartbeat ${ago(vm.last_heartbeat)}`),
        h("span", { class: "spacer" }),
        h("a", { class: "btn", href: `#/vm/${encodeURIComponent(name)}/tree`, id: "open-tree" }, "Process tree"),
      ),
    );
    const c = vm.counters;
    const gaps = gapTotals(vm.delivery);
    const drops = dropsOf(c);
    clear(stats).append(
      stat("Frames", count(c?.frames)), stat("Received", bytes(c?.bytes)), stat("Events", count(c?.events)),
      stat("Heartbeats", count(c?.heartbeats)), stat("Dropped", count(drops), drops ? "bad" : ""),
      stat("Gaps", count(gaps.gaps), gaps.gaps ? "warn" : "", gaps.gaps ? `${count(gaps.events)} events lost${gaps.unknown ? ", some unknown" : ""}` : null),
      stat("Decode errors", count(c?.decode_errors), c?.decode_errors ? "bad" : ""),
    );
    if (gaps.gaps !== gapsSeen) {
      gapsSeen = gaps.gaps;
      loadGaps(vm.delivery);
    }
    clear(bootsBody).append(table(
      [
        { label: "Boot", render: (b) => h("span", { class: "mono" }, b.boot) },
        { label: "First seen", render: (b) => time(b.first_seen) },
        { label: "Last seen", render: (b) => time(b.last_seen) },
      ],
      [...(vm.boots || [])].reverse(),
      { empty: "No boot seen yet." },
    ));
    append(clear(countersBody), [countersList(c), deliveryList(vm.delivery)]);
    config.setLastAnswer(vm.config_response);
  }

  async function loadGaps(delivery) {
    try {
      const items = await listAll(`${vmPath}/gaps`, { signal: controller.signal, max: 5000 });
      const recent = items.slice(-GAPS_SHOWN).reverse();
      const byCause = gapsByCause(delivery).map((g) => `${causeLabel(g.cause)} ${count(g.gaps)}`);
      gapsCount.textContent = items.length ? byCause.join(" · ") : "";
      const more = items.length > recent.length ? h("div", { class: "empty" }, `The ${count(recent.length)} most recent of ${count(items.length)} gaps.`) : null;
      clear(gapsBody).append(table(
        [
          { label: "Cause", render: (g) => h("span", { title: causeHelp(g.cause) }, h("span", { class: "pill warn" }, causeLabel(g.cause)), g.details?.guest_cause ? h("span", { class: "faint" }, ` ${g.details.guest_cause.replaceAll("_", " ")}`) : null) },
          { label: "Boot", render: (g) => h("span", { class: "mono" }, g.boot) },
          { label: "Sequences", nowrap: true, render: (g) => (g.first_seq === null ? h("span", { class: "faint", title: "v1 guests number no events" }, "—") : h("span", { class: "mono" }, g.first_seq === g.last_seq ? String(g.first_seq) : `${g.first_seq}–${g.last_seq}`)) },
          { label: "Events lost", num: true, render: (g) => (g.count === null ? h("span", { class: "muted" }, "unknown") : h("span", { class: "warn" }, count(g.count))) },
          { label: "When", nowrap: true, render: (g) => when(g) },
        ],
        recent,
        { empty: "No gaps: every event the guest sent was stored.", rowClass: () => "gap-row" },
      ));
      if (more) gapsBody.append(more);
    } catch (err) {
      if (err.name !== "AbortError") clear(gapsBody).append(h("div", { class: "error-line" }, describeError(err, "Gaps are")));
    }
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

function stat(label, value, kind = "", note = null) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: `value ${kind}`.trim() }, value), note ? h("div", { class: "note" }, note) : null);
}

/** When the lost events happened (the guest's clock) and when the
receiver noticed. */
function when(gap) {
  const short = (iso) => time(iso).replace(/\.\d+Z$/, "Z");
  const from = gap.started_at ? short(gap.started_at) : null;
  const to = gap.ended_at ? short(gap.ended_at) : null;
  let text = from || to || "—";
  // The second time only from where it differs from the first.
  if (from && to && to !== from) text = `${from} → ${to.slice(0, 10) === from.slice(0, 10) ? to.slice(11) : to}`;
  return h("span", null, text, h("div", { class: "faint" }, `detected ${short(gap.detected_at)}`));
}

function countersList(counters) {
  if (!counters) return h("div", { class: "empty" }, "No live counters: the VM is not registered in this receiver process.");
  const rows = [];
  for (const [key, value] of Object.entries(counters)) {
    if (value && typeof value === "object") {
      const nonzero = Object.entries(value).filter(([, n]) => n);
      if (!nonzero.length) rows.push([key, 0]);
      for (const [cause, n] of nonzero) rows.push([`${key} · ${cause.replaceAll("_", " ")}`, n]);
    } else rows.push([key.replaceAll("_", " "), value]);
  }
  return h("dl", { class: "kv cols" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", { class: v && /drop|error|truncated|refused/.test(k) ? "bad" : null }, count(v))]));
}

function deliveryList(delivery) {
  if (!delivery) return null;
  const rows = [];
  const sequences = Object.entries(delivery.sequences || {});
  for (const [boot, marks] of sequences) rows.push([`boot ${boot}`, `accepted ${count(marks.accepted)} · acked ${count(marks.acked)}`]);
  // Only v2 guests can be paused or resend; zeros of a v1 guest say nothing.
  const v2 = Boolean(delivery.hello) || sequences.length > 0;
  if (v2 || delivery.duplicates) rows.push(["duplicates", count(delivery.duplicates ?? 0)]);
  if (v2 || delivery.pauses || delivery.paused) rows.push(["backpressure pauses", `${count(delivery.pauses ?? 0)}${delivery.paused ? " (paused now)" : ""}`]);
  if (v2 || delivery.refused) rows.push(["refused", count(delivery.refused ?? 0)]);
  for (const g of gapsByCause(delivery)) rows.push([`gaps · ${causeLabel(g.cause)}`, `${count(g.gaps)} · ${describeLost(g)}`]);
  const hello = delivery.hello;
  if (hello) {
    rows.push(["guest software", hello.software_version || "—"]);
    rows.push(["replay buffer", `${hello.replay_capacity_events ?? "?"} events`]);
  }
  if (!rows.length) return null;
  return h("div", { id: "vm-delivery" }, h("h3", { class: "subhead" }, "Delivery"), h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])));
}
