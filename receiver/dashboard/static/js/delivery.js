// Delivery as the dashboard shows it: what was dropped, where the gaps are.

import { h } from "./dom.js";
import { count, sumValues } from "./format.js";

// The receiver's gap causes, in words an operator reads at a glance.
export const GAP_CAUSES = {
  guest_overflow: ["guest overflow", "The guest lost these events itself: its replay buffer or event source overflowed."],
  host_overflow: ["host overflow", "The receiver could not take these events: its queue or journal was full."],
  v1_reconnect: ["v1 reconnect", "A v1 guest reconnected; whatever it produced in between is gone."],
  v1_heartbeat_silence: ["heartbeat silence", "A v1 guest stopped heartbeating for a while; events may be missing."],
  sequence_gap: ["sequence gap", "A v2 guest skipped sequence numbers without reporting the loss."],
};

export function causeLabel(cause) {
  return (GAP_CAUSES[cause] || [String(cause || "unknown").replaceAll("_", " ")])[0];
}

export function causeHelp(cause) {
  return (GAP_CAUSES[cause] || [null, ""])[1];
}

/** Stored gaps of a VM per cause: ``[{cause, gaps, events, unknown}]``. */
export function gapsByCause(delivery) {
  const byCause = new Map();
  for (const row of delivery?.gap_summary || []) {
    const entry = byCause.get(row.cause) || { cause: row.cause, gaps: 0, events: 0, unknown: 0 };
    entry.gaps += row.gaps;
    entry.events += row.events;
    entry.unknown += row.unknown_size;
    byCause.set(row.cause, entry);
  }
  return [...byCause.values()];
}

/** Totals over causes: how many gaps, events known lost, gaps of unknown size. */
export function gapTotals(delivery) {
  return gapsByCause(delivery).reduce(
    (a, g) => ({ gaps: a.gaps + g.gaps, events: a.events + g.events, unknown: a.unknown + g.unknown }),
    { gaps: 0, events: 0, unknown: 0 },
  );
}

export function dropsOf(counters) {
  return sumValues(counters?.drops);
}

/** How much a group of gaps lost, in words. */
export function describeLost(g) {
  if (g.unknown && g.unknown === g.gaps) return "size unknown";
  const events = `${count(g.events)} event${g.events === 1 ? "" : "s"} lost`;
  return g.unknown ? `${events} + ${count(g.unknown)} of unknown size` : events;
}

/** The fleet's "drops and gaps" cell: drops, then each cause of gaps. */
export function lossCell(counters, delivery) {
  const drops = dropsOf(counters);
  const gaps = gapsByCause(delivery);
  const parts = [];
  if (drops) parts.push(h("span", { class: "loss bad", title: "Events the receiver received but could not store" }, `${count(drops)} dropped`));
  for (const g of gaps) {
    parts.push(h("span", { class: "loss warn", title: causeHelp(g.cause), dataset: { cause: g.cause } },
      `${causeLabel(g.cause)} ×${count(g.gaps)}`, h("span", { class: "muted" }, ` · ${describeLost(g)}`)));
  }
  if (!parts.length) return h("span", { class: "muted" }, drops === null ? "no gaps" : "none");
  return h("span", { class: "losses" }, parts);
}
