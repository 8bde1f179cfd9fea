// Findings as the dashboard needs them: fetched once, grouped, degraded on 404.

import { api } from "./api.js";

export const FINDING_KINDS = ["added_binary_executed", "added_library_loaded", "reverse_shell", "exec_session_started"];

/** ``{available, items, error}``; a 404 means the receiver has no detections. */
export async function fetchFindings(query = {}, signal) {
  try {
    const items = [];
    let cursor = null;
    do {
      const page = await api("/api/v1/findings", { signal, query: { limit: 1000, ...query, cursor } });
      items.push(...(page.items || []));
      cursor = page.next;
    } while (cursor && items.length < 5000);
    return { available: true, items, error: null };
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return { available: false, items: [], error: err };
  }
}

export function isOpen(finding) {
  const state = (finding.status || finding.state || "open").toLowerCase();
  return !["closed", "resolved", "dismissed", "acknowledged"].includes(state);
}

export function processLink(finding) {
  return finding.process_uuid && finding.vm ? `#/vm/${encodeURIComponent(finding.vm)}/process/${finding.process_uuid}` : null;
}
