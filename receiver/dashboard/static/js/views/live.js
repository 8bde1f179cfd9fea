// Live tail: events and findings as the receiver stores them.

import { h, clear, panel } from "../dom.js";
import { count, findingKind, time } from "../format.js";
import { follow } from "../sse.js";

const MAX_LINES = 500;

export function mount(root) {
  const lines = h("div", { class: "tail", id: "tail" });
  const stateBox = h("span", { class: "pill", id: "tail-state" }, "connecting");
  const counter = h("span", { class: "muted" });
  const pause = h("button", { class: "btn", type: "button" }, "Pause");
  const clearButton = h("button", { class: "btn", type: "button" }, "Clear");
  const kindSelect = h("select", { id: "tail-kind" }, h("option", { value: "" }, "Events and findings"), h("option", { value: "finding" }, "Findings only"), h("option", { value: "event" }, "Events only"));
  const vmFilter = h("input", { type: "search", placeholder: "VM name…", id: "tail-vm", style: "width:140px" });
  const placeholder = h("div", { class: "empty" }, "Waiting for events…");
  let paused = false;
  let seen = 0;
  let missed = 0;
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Live tail"), stateBox, counter, h("span", { class: "spacer" }), kindSelect, vmFilter, pause, clearButton),
    panel("Stream", h("div", null, placeholder, lines), { id: "tail-panel" }),
  );
  pause.addEventListener("click", () => { paused = !paused; pause.textContent = paused ? "Resume" : "Pause"; });
  clearButton.addEventListener("click", () => { clear(lines); seen = 0; counter.textContent = ""; });

  function summary(kind, data) {
    if (kind === "finding") {
      const subject = data.details?.binary || data.details?.path || "";
      return `${(data.severity || "").toUpperCase()} ${findingKind(data.kind)} · ${subject ? subject + " · " : ""}${data.process_uuid || ""}${data.details?.written_by_uuid ? " · written by " + data.details.written_by_uuid : ""}`;
    }
    const p = data.process || data.proc || data;
    const type = data.type || data.event || data.kind || "event";
    const bits = [type];
    if (p.pid !== undefined) bits.push(`pid ${p.pid}`);
    if (p.binary) bits.push(p.binary);
    if (p.argv && p.argv.length) bits.push(p.argv.join(" "));
    else if (p.uuid) bits.push(p.uuid);
    return bits.join(" · ");
  }

  function add(message) {
    let data;
    try { data = JSON.parse(message.data); } catch { data = { text: message.data }; }
    if (message.event === "missed" || data.missed) {
      missed += Number(data.missed || data.count || 0);
      counter.textContent = `${count(seen)} received · ${count(missed)} missed (the dashboard fell behind)`;
      return;
    }
    const kind = message.event === "finding" ? "finding" : "event";
    const vm = data.vm || "";
    if (paused) return;
    if (kindSelect.value && kindSelect.value !== kind) return;
    if (vmFilter.value && !vm.includes(vmFilter.value.trim())) return;
    seen += 1;
    placeholder.hidden = true;
    const body = data.data && typeof data.data === "object" ? data.data : data;
    const at = body.at || body.timestamp || body.started_at || new Date().toISOString();
    const what = summary(kind, body);
    const uuid = body.process_uuid || body.uuid || body.process?.uuid;
    const line = h("div", { class: `line ${kind}` },
      h("span", { class: "muted" }, time(at).slice(11)),
      h("span", null, h("span", { class: kind === "finding" ? "pill crit" : "pill" }, kind)),
      h("span", null, vm ? h("a", { href: `#/vm/${encodeURIComponent(vm)}` }, vm) : ""),
      h("span", { class: "what", title: what }, uuid && vm ? h("a", { href: `#/vm/${encodeURIComponent(vm)}/process/${uuid}` }, what) : what),
    );
    lines.prepend(line);
    while (lines.childElementCount > MAX_LINES) lines.lastElementChild.remove();
    counter.textContent = `${count(seen)} received${missed ? ` · ${count(missed)} missed` : ""}`;
  }

  const stop = follow("/api/v1/stream", {
    onMessage: add,
    onState: (state) => {
      const labels = { connecting: ["connecting", ""], open: ["live", "ok"], closed: ["reconnecting", "warn"], down: ["receiver unreachable, retrying", "bad"], missing: ["not available", ""], unauthorized: ["token rejected", "bad"] };
      const [text, kind] = labels[state] || [state, ""];
      stateBox.textContent = text;
      stateBox.className = `pill ${kind}`.trim();
      if (state === "missing") placeholder.textContent = "Live tail not available on this receiver (/api/v1/stream answered 404).";
    },
  });
  return stop;
}
