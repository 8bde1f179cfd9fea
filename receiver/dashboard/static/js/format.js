// Formatting of times, counts and the API's shapes for display.

import { h } from "./dom.js";

export function time(iso, { seconds = true } = {}) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const text = date.toISOString().replace("T", " ");
  return seconds ? text.slice(0, 23) + "Z" : text.slice(0, 16) + "Z";
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const s = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function count(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "—";
  if (perSecond < 10) return `${perSecond.toFixed(1)}/s`;
  return `${Math.round(perSecond).toLocaleString("en-US")}/s`;
}

export function shortUuid(uuid) {
  return uuid ? `${uuid.slice(0, 8)}…${uuid.slice(-8)}` : "—";
}

export function sumValues(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return value;
  if (typeof value === "object") return Object.values(value).reduce((a, v) => a + (sumValues(v) || 0), 0);
  return null;
}

export function argv(list, binary) {
  if (!list || !list.length) return h("span", { class: "argv faint" }, binary || "(no argv)");
  return h("span", { class: "argv" }, list.map((arg, i) => h("span", { class: i ? "arg" : "arg arg0" }, arg === "" ? '""' : arg)));
}

export function stream(value) {
  if (!value) return h("span", { class: "faint" }, "—");
  const kind = value.kind || "unknown";
  if (kind === "socket") {
    const end = (a) => (a ? `${String(a.ip).includes(":") ? `[${a.ip}]` : a.ip}${a.port !== undefined ? ":" + a.port : ""}` : "?");
    return h("span", null, h("span", { class: "pill bad" }, "socket"), " ", h("span", { class: "mono" }, `${end(value.local)} → ${value.remote ? end(value.remote) : "(not connected)"}`));
  }
  return h("span", null, h("span", { class: "pill" }, kind), value.path ? h("span", { class: "mono" }, " " + value.path) : null);
}

export function layer(name) {
  if (!name) return h("span", { class: "faint" }, "—");
  return h("span", { class: `layer-${name}` }, name);
}

export function severityPill(severity) {
  const s = (severity || "info").toLowerCase();
  return h("span", { class: `pill sev-${s}` }, s);
}

export function findingKind(kind) {
  return (kind || "").replaceAll("_", " ");
}
