// Fleet: every VM with its state, traffic, losses and open findings; live.

import { api, describeError } from "../api.js";
import { append, h, clear, panel, table, pill } from "../dom.js";
import { ago, count, rate } from "../format.js";
import { fetchFindings, isOpen } from "../findings-data.js";
import { follow } from "../sse.js";
import { dropsOf, gapTotals, lossCell } from "../delivery.js";

const POLL_MS = 2000;
const FINDINGS_POLL_MS = 10000;

export function healthPill(vm) {
  const health = vm.health || (vm.connected ? "healthy" : "disconnected");
  const kind = { healthy: "ok", unhealthy: "warn", disconnected: "" }[health] ?? "";
  return pill(health, kind);
}

export function mount(root, _params, _query, ctx) {
  const controller = new AbortController();
  const previous = new Map();
  const rates = new Map();
  let details = new Map();
  let findings = { available: true, items: [], error: null, loaded: false };
  let vms = null;
  let hosts = [];
  let error = null;
  let timers = [];

  const stats = h("div", { class: "stats", id: "fleet-stats" });
  const body = h("div");
  const note = h("div");
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Fleet"), h("span", { class: "sub", id: "fleet-sub" }, "every VM this receiver knows")),
    stats,
    panel("Virtual machines", body, { id: "fleet-panel" }),
    note,
  );

  function render() {
    if (error && !vms) {
      clear(body).append(h("div", { class: "error-line" }, describeError(error)));
      return;
    }
    if (!vms) {
      clear(body).append(h("div", { class: "empty" }, "Loading…"));
      return;
    }
    const openBy = new Map();
    for (const f of findings.items) if (isOpen(f)) openBy.set(f.vm, (openBy.get(f.vm) || 0) + 1);
    const totalRate = [...rates.values()].reduce((a, r) => a + (r || 0), 0);
    const drops = vms.reduce((a, vm) => a + (dropsOf(details.get(vm.name)?.counters) || 0), 0);
    const gaps = vms.reduce((a, vm) => a + gapTotals(details.get(vm.name)?.delivery).gaps, 0);
    const connected = vms.filter((vm) => vm.connected).length;
    const open = [...openBy.values()].reduce((a, n) => a + n, 0);
    const running = hosts.filter((host) => host.running).length;
    append(clear(stats), [
      stat("VMs", count(vms.length)),
      stat("Connected", `${connected} / ${vms.length}`, connected < vms.length ? "warn" : ""),
      hosts.length ? stat("Hosts running", `${running} / ${hosts.length}`, running < hosts.length ? "warn" : "") : null,
      stat("Events", rate(totalRate)),
      stat("Dropped", count(drops), drops ? "bad" : ""),
      stat("Gaps", count(gaps), gaps ? "warn" : ""),
      stat("Open findings", findings.available ? count(open) : "n/a", open ? "bad" : ""),
    ]);
    const multiHost = new Set(vms.map((vm) => vm.host)).size > 1 || hosts.length > 1;
    const columns = [
      { label: "VM", nowrap: true, render: (vm) => h("a", { href: `#/vm/${encodeURIComponent(vm.name)}`, class: "vm-link" }, vm.name) },
      { label: "Host", nowrap: true, render: (vm) => h("span", { class: multiHost ? "mono" : "mono muted" }, vm.host || "—") },
      { label: "State", render: healthPill },
      { label: "Protocol", render: (vm) => protocolPill(vm, details.get(vm.name)?.delivery) },
      { label: "Transport", render: transport },
      { label: "Heartbeat", nowrap: true, render: (vm) => h("span", { title: vm.last_heartbeat || "" }, ago(vm.last_heartbeat)) },
      { label: "Boots", num: true, render: (vm) => count((vm.boots || []).length) },
      { label: "Events", num: true, render: (vm) => count(details.get(vm.name)?.counters?.events) },
      { label: "Rate", num: true, render: (vm) => rate(rates.get(vm.name)) },
      { label: "Drops and gaps", render: (vm) => lossCell(details.get(vm.name)?.counters, details.get(vm.name)?.delivery) },
      { label: "Decode errors", num: true, render: (vm) => losses(details.get(vm.name)?.counters?.decode_errors) },
      { label: "Open findings", num: true, render: (vm) => (findings.available ? findingCount(vm, openBy.get(vm.name) || 0) : h("span", { class: "faint" }, "n/a")) },
    ];
    clear(body).append(
      table(columns, vms, {
        onRow: (vm) => ctx.navigate(`/vm/${encodeURIComponent(vm.name)}`),
        empty: "No VMs yet. Start the receiver with --vm NAME=hybrid:PATH or register one with POST /api/v1/vms.",
      }),
    );
    clear(note);
    if (!findings.available && findings.loaded) note.append(h("div", { class: "unavailable" }, describeError(findings.error, "Findings are")));
    // An unreachable receiver is already said by the banner.
    if (error && error.kind !== "unreachable") note.append(h("div", { class: "error-line" }, describeError(error)));
  }

  async function poll() {
    try {
      const list = await api("/api/v1/vms", { signal: controller.signal, query: { limit: 1000 } });
      hosts = (await api("/api/v1/hosts", { signal: controller.signal }).catch(() => ({ items: [] }))).items;
      const now = performance.now();
      const fetched = await Promise.all(
        list.items.map((vm) => api(`/api/v1/vms/${encodeURIComponent(vm.name)}`, { signal: controller.signal }).catch(() => null)),
      );
      const next = new Map();
      list.items.forEach((vm, i) => {
        const detail = fetched[i];
        if (!detail) return;
        next.set(vm.name, detail);
        const events = detail.counters?.events;
        const before = previous.get(vm.name);
        if (events !== undefined && before && now > before.t) rates.set(vm.name, Math.max(0, ((events - before.events) * 1000) / (now - before.t)));
        else if (!before) rates.set(vm.name, null);
        if (events !== undefined) previous.set(vm.name, { t: now, events });
      });
      vms = list.items;
      details = next;
      error = null;
    } catch (err) {
      if (err.name === "AbortError") return;
      error = err;
    }
    render();
  }

  async function pollFindings() {
    const result = await fetchFindings({}, controller.signal).catch(() => null);
    if (!result) return;
    findings = { ...result, loaded: true };
    render();
  }

  render();
  poll();
  pollFindings();
  timers.push(setInterval(poll, POLL_MS), setInterval(pollFindings, FINDINGS_POLL_MS));
  const stop = follow("/api/v1/stream?kind=finding", {
    onMessage: (m) => {
      if (m.event === "finding") pollFindings();
    },
    onState: () => {},
  });
  return () => {
    controller.abort();
    timers.forEach(clearInterval);
    timers = [];
    stop();
  };
}

function stat(label, value, kind = "") {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: `value ${kind}`.trim() }, value));
}

/** v1 or v2; a v2 guest's software version shows on hover. */
export function protocolPill(vm, delivery) {
  if (!vm.protocol) return h("span", { class: "faint" }, "—");
  const hello = delivery?.hello;
  const title = hello ? `${hello.software_version || "v2 guest"}; replay buffer ${hello.replay_capacity_events ?? "?"} events` : null;
  return h("span", { class: vm.protocol === "v2" ? "pill ok protocol" : "pill protocol", title }, vm.protocol);
}

function transport(vm) {
  // The socket path is long; its file name tells VMs apart, the rest hovers.
  const address = String(vm.address ?? "");
  const short = vm.transport === "hybrid" ? address.split("/").pop() : address;
  return h("span", { class: "mono muted", title: `${vm.transport} ${address}` }, `${vm.transport} ${short}`);
}

function losses(n) {
  if (n === null || n === undefined) return h("span", { class: "faint" }, "—");
  return h("span", { class: n ? "bad" : "muted" }, count(n));
}

function findingCount(vm, n) {
  if (!n) return h("span", { class: "muted" }, "0");
  return h("a", { href: `#/findings?vm=${encodeURIComponent(vm.name)}`, class: "pill bad" }, count(n));
}
