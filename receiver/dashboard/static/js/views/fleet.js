// Fleet: every VM with its state, traffic, losses and findings; live.
// One request to /api/v1/fleet/summary per refresh carries all of it.

import { api, describeError } from "../api.js";
import { append, h, clear, panel, table, pill } from "../dom.js";
import { ago, count, rate } from "../format.js";
import { lossCell } from "../delivery.js";

const POLL_MS = 2000;
const PAGE_SIZE = 1000;
const SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"];

export function healthPill(vm) {
  const health = vm.health || (vm.connected ? "healthy" : "disconnected");
  const kind = { healthy: "ok", unhealthy: "warn", disconnected: "" }[health] ?? "";
  return pill(health, kind);
}

/** Every page of the fleet summary: one request unless the fleet has more
 * than a page of VMs. Totals and hosts come with the first page. */
async function fetchSummary(signal) {
  const first = await api("/api/v1/fleet/summary", { signal, query: { limit: PAGE_SIZE } });
  const items = [...first.items];
  let cursor = first.next;
  while (cursor) {
    const page = await api("/api/v1/fleet/summary", { signal, query: { limit: PAGE_SIZE, cursor } });
    items.push(...page.items);
    cursor = page.next;
  }
  return { ...first, items };
}

export function mount(root, _params, _query, ctx) {
  const controller = new AbortController();
  const previous = new Map();
  const rates = new Map();
  let summary = null;
  let error = null;
  let timer = null;

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
    if (error && !summary) {
      clear(body).append(h("div", { class: "error-line" }, describeError(error)));
      return;
    }
    if (!summary) {
      clear(body).append(h("div", { class: "empty" }, "Loading…"));
      return;
    }
    const { items: vms, totals, hosts } = summary;
    const totalRate = [...rates.values()].reduce((a, r) => a + (r || 0), 0);
    append(clear(stats), [
      stat("VMs", count(totals.vms)),
      stat("Connected", `${count(totals.connected)} / ${count(totals.vms)}`, totals.connected < totals.vms ? "warn" : ""),
      totals.hosts ? stat("Hosts running", `${totals.hosts_running} / ${totals.hosts}`, totals.hosts_running < totals.hosts ? "warn" : "") : null,
      stat("Events", rate(totalRate)),
      stat("Dropped", count(totals.drops), totals.drops ? "bad" : ""),
      stat("Gaps", count(totals.gaps), totals.gaps ? "warn" : ""),
      stat("Open findings", count(totals.findings.total), totals.findings.total ? "bad" : ""),
    ]);
    const multiHost = new Set(vms.map((vm) => vm.host)).size > 1 || hosts.length > 1;
    const columns = [
      { label: "VM", nowrap: true, render: (vm) => h("a", { href: vmHref(vm), class: "vm-link" }, vm.name) },
      { label: "Host", nowrap: true, render: (vm) => h("span", { class: multiHost ? "mono" : "mono muted" }, vm.host || "—") },
      { label: "State", render: healthPill },
      { label: "Protocol", render: (vm) => protocolPill(vm, { hello: vm.hello }) },
      { label: "Transport", render: transport },
      { label: "Heartbeat", nowrap: true, render: (vm) => h("span", { title: vm.last_heartbeat || "" }, ago(vm.last_heartbeat)) },
      { label: "Last event", nowrap: true, render: (vm) => h("span", { title: vm.last_event_at || "" }, ago(vm.last_event_at)) },
      { label: "Boots", num: true, render: (vm) => count(vm.boots) },
      { label: "Events", num: true, render: (vm) => count(vm.counters?.events) },
      { label: "Rate", num: true, render: (vm) => rate(rates.get(vmKey(vm))) },
      { label: "Drops and gaps", render: (vm) => lossCell(vm.counters, { gap_summary: vm.gaps }) },
      { label: "Decode errors", num: true, render: (vm) => losses(vm.counters?.decode_errors) },
      { label: "Open findings", num: true, render: (vm) => findingCount(vm, vm.findings) },
    ];
    clear(body).append(
      table(columns, vms, {
        onRow: (vm) => ctx.navigate(`/vm/${encodeURIComponent(vm.name)}`),
        empty: "No VMs yet. Start the receiver with --vm NAME=hybrid:PATH or register one with POST /api/v1/vms.",
      }),
    );
    clear(note);
    // An unreachable receiver is already said by the banner.
    if (error && error.kind !== "unreachable") note.append(h("div", { class: "error-line" }, describeError(error)));
  }

  function noteRates(items) {
    const now = performance.now();
    for (const vm of items) {
      const key = vmKey(vm);
      const events = vm.counters?.events;
      const before = previous.get(key);
      if (events !== undefined && before && now > before.t) rates.set(key, Math.max(0, ((events - before.events) * 1000) / (now - before.t)));
      else if (!before) rates.set(key, null);
      if (events !== undefined) previous.set(key, { t: now, events });
    }
    const present = new Set(items.map(vmKey));
    for (const key of [...rates.keys()]) if (!present.has(key)) rates.delete(key);
  }

  async function poll() {
    try {
      const next = await fetchSummary(controller.signal);
      noteRates(next.items);
      summary = next;
      error = null;
    } catch (err) {
      if (err.name === "AbortError") return;
      error = err;
    }
    render();
  }

  render();
  poll();
  timer = setInterval(poll, POLL_MS);
  return () => {
    controller.abort();
    clearInterval(timer);
  };
}

function vmKey(vm) {
  return `${vm.host}/${vm.name}`;
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

function findingCount(vm, findings) {
  const n = findings?.total || 0;
  if (!n) return h("span", { class: "muted" }, "0");
  const title = SEVERITY_ORDER.filter((s) => findings.by_severity?.[s]).map((s) => `${findings.by_severity[s]} ${s}`).join(", ");
  return h("a", { href: `#/findings?vm=${encodeURIComponent(vm.name)}`, class: "pill bad", title }, count(n));
}

/** The VM page of ``vm``, on its own host (names are unique per host). */
function vmHref(vm) {
  const page = `#/vm/${encodeURIComponent(vm.name)}`;
  return vm.host ? `${page}?host=${encodeURIComponent(vm.host)}` : page;
}
