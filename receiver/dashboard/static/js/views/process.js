// One process: command line, environment, streams, binary and its writer,
// ancestors, children, exec history, executable mappings and findings.

import { api, describeError } from "../api.js";
import { h, clear, panel, table, pill } from "../dom.js";
import { argv, count, findingKind, layer, severityPill, shortUuid, stream, time } from "../format.js";
import { fetchFindings } from "../findings-data.js";

export function mount(root, [vmName, uuid], _query, ctx) {
  const controller = new AbortController();
  const vmHref = `#/vm/${encodeURIComponent(vmName)}`;
  const link = (id, label) => h("a", { class: "mono", href: `${vmHref}/process/${id}` }, label || shortUuid(id));
  root.append(h("div", { class: "empty" }, "Loading…"));

  async function load() {
    let p;
    try {
      p = await api(`/api/v1/vms/${encodeURIComponent(vmName)}/processes/${uuid}`, { signal: controller.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(root).append(h("div", { class: "error-line" }, describeError(err)));
      return;
    }
    const writerBox = h("span", { id: "written-by" });
    const findingsBody = h("div", null, h("div", { class: "empty" }, "Loading…"));
    const containerBox = h("span", null, p.container_id ? `#${p.container_id}` : "host (not in a container)");
    const alive = !p.exited_at;

    const processColumns = [
      { label: "Binary", render: (x) => link(x.uuid, x.binary || "(unknown)") },
      { label: "Command line", wrap: true, render: (x) => argv(x.argv) },
      { label: "PID", num: true, render: (x) => String(x.pid) },
      { label: "Started", nowrap: true, render: (x) => h("span", { title: time(x.started_at) }, time(x.started_at).slice(11)) },
      { label: "Exited", nowrap: true, render: (x) => (x.exited_at ? h("span", { title: time(x.exited_at) }, time(x.exited_at).slice(11)) : h("span", { class: "ok" }, "alive")) },
    ];
    const writerLink = (id) => (id ? link(id) : h("span", { class: "faint" }, "—"));

    clear(root).append(
      h("div", { class: "crumbs" },
        h("a", { href: "#/fleet" }, "Fleet"), " / ", h("a", { href: vmHref }, vmName), " / ",
        h("a", { href: `${vmHref}/tree${p.container_id ? `?container=${p.container_id}` : ""}` }, "process tree"), " / ", `pid ${p.pid}`),
      h("div", { class: "page-head" },
        h("h1", { class: "mono", id: "process-binary" }, p.binary || "(unknown binary)"),
        pill(alive ? "alive" : "exited", alive ? "ok" : ""),
        p.binary_layer === "added" || p.binary_layer === "modified" ? pill(`${p.binary_layer} binary`, "bad") : null,
        p.exec_session_id ? pill(`exec session ${p.exec_session_id}`, "warn") : null,
        h("span", { class: "sub mono" }, p.uuid),
      ),
      h("div", { class: "grid two" },
        h("div", { class: "stack" },
          panel("Command line", h("div", { id: "process-argv" }, argv(p.argv, p.binary)), { flush: false }),
          panel("Binary", h("dl", { class: "kv", id: "process-binary-info" },
            h("dt", null, "Path"), h("dd", { class: "mono" }, p.binary || "—"),
            h("dt", null, "Layer"), h("dd", null, layer(p.binary_layer), p.binary_layer === "added" ? h("span", { class: "muted" }, " — not in the image: written inside the container") : null),
            h("dt", null, "Written by"), h("dd", null, writerBox),
          ), { flush: false }),
          panel("Streams", h("dl", { class: "kv", id: "process-streams" },
            ["stdin", "stdout", "stderr"].map((name) => [h("dt", null, name), h("dd", null, stream(p[name]))]),
          ), { flush: false }),
          panel("Environment", envList(p.envp), { count: p.envp ? count(p.envp.length) : undefined, flush: false }),
          panel("Findings", findingsBody, { id: "process-findings" }),
        ),
        h("div", { class: "stack" },
          panel("Identity", h("dl", { class: "kv" },
            h("dt", null, "UUID"), h("dd", { class: "mono" }, p.uuid),
            h("dt", null, "Boot"), h("dd", { class: "mono" }, p.boot),
            h("dt", null, "PID"), h("dd", null, String(p.pid), p.container_pid ? h("span", { class: "muted" }, ` (${p.container_pid} in its container)`) : null),
            h("dt", null, "Parent"), h("dd", null, p.parent_uuid ? link(p.parent_uuid, `pid ${p.parent_pid} · ${shortUuid(p.parent_uuid)}`) : "—"),
            h("dt", null, "Container"), h("dd", null, containerBox),
            h("dt", null, "Exec session"), h("dd", null, p.exec_session_id ? String(p.exec_session_id) : "—"),
            h("dt", null, "Started"), h("dd", null, time(p.started_at)),
            h("dt", null, "Exec at"), h("dd", null, time(p.exec_at)),
            h("dt", null, "Exited"), h("dd", null, p.exited_at ? time(p.exited_at) : "still running"),
          ), { flush: false }),
          panel("Ancestors", table(processColumns, p.ancestors || [], { empty: "No known ancestors." }), { id: "process-ancestors", count: count((p.ancestors || []).length) }),
          panel("Children", table(processColumns, p.children || [], { empty: "No children." }), { id: "process-children", count: count((p.children || []).length) }),
        ),
      ),
      h("div", { class: "stack", style: "margin-top:14px" },
        panel("Exec history", table([
          { label: "At", render: (e) => time(e.at) },
          { label: "Binary", render: (e) => h("span", { class: "mono" }, e.binary || "—") },
          { label: "Command line", wrap: true, render: (e) => argv(e.argv) },
          { label: "Layer", render: (e) => layer(e.binary_layer) },
          { label: "Written by", render: (e) => writerLink(e.binary_written_by) },
          { label: "stdin", render: (e) => stream(e.stdin) },
        ], p.execs || [], { empty: "No exec recorded." }), { id: "process-execs", count: count((p.execs || []).length) }),
        panel("Executable mappings", table([
          { label: "At", render: (m) => time(m.at) },
          { label: "Action", render: (m) => m.action },
          { label: "Path", wrap: true, render: (m) => h("span", { class: "mono" }, m.path || "(anonymous)") },
          { label: "Layer", render: (m) => layer(m.layer) },
          { label: "Written by", render: (m) => writerLink(m.written_by) },
          { label: "Range", render: (m) => h("span", { class: "mono muted" }, m.start_addr !== null && m.start_addr !== undefined ? `${hex(m.start_addr)}–${hex(m.end_addr)}` : "—") },
        ], p.memexecs || [], { empty: "No executable mappings recorded." }), { id: "process-memexecs", count: count((p.memexecs || []).length) }),
      ),
    );

    // Follow-ups that need other endpoints; each degrades on its own.
    if (p.binary_written_by) describeWriter(p.binary_written_by, writerBox);
    else writerBox.append(h("span", { class: "faint" }, p.binary_layer === "added" ? "unknown (the guest did not say)" : "— (from the image)"));
    if (p.container_id) describeContainer(p, containerBox);
    const found = await fetchFindings({ vm: vmName }, controller.signal).catch(() => null);
    if (!found) return;
    if (!found.available) {
      clear(findingsBody).append(h("div", { class: "unavailable" }, describeError(found.error, "Findings are")));
      return;
    }
    const mine = found.items.filter((f) => f.process_uuid === p.uuid || f.details?.written_by_uuid === p.uuid);
    clear(findingsBody).append(table([
      { label: "Severity", render: (f) => severityPill(f.severity) },
      { label: "Kind", render: (f) => findingKind(f.kind) },
      { label: "Process", render: (f) => (f.process_uuid === p.uuid ? h("span", { class: "muted" }, "this process") : link(f.process_uuid)) },
      { label: "At", render: (f) => time(f.at) },
    ], mine, { empty: "No findings about this process." }));
  }

  async function describeWriter(writer, box) {
    box.append(link(writer, shortUuid(writer)));
    try {
      const w = await api(`/api/v1/vms/${encodeURIComponent(vmName)}/processes/${writer}`, { signal: controller.signal });
      clear(box).append(
        h("a", { class: "mono", href: `${vmHref}/process/${writer}`, id: "writer-link" }, w.binary || shortUuid(writer)),
        h("span", { class: "muted" }, ` pid ${w.pid} · `),
        argv(w.argv),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      box.append(h("span", { class: "muted" }, " (not stored in this receiver)"));
    }
  }

  async function describeContainer(p, box) {
    try {
      const { items } = await api(`/api/v1/vms/${encodeURIComponent(vmName)}/containers`, { signal: controller.signal, query: { limit: 1000 } });
      const c = items.find((x) => x.container_id === p.container_id && x.boot === p.boot);
      if (c) clear(box).append(`${c.pod_namespace ?? "?"}/${c.pod_name ?? "?"} · ${c.container_name ?? "?"} `, h("span", { class: "muted mono" }, c.image || ""), h("span", { class: "faint" }, ` (#${c.container_id})`));
    } catch {
      // The container's number alone still says enough.
    }
  }

  load();
  return () => controller.abort();
}

function hex(n) {
  return "0x" + BigInt(n).toString(16);
}

function envList(envp) {
  if (!envp || !envp.length) return h("div", { class: "muted" }, "No environment recorded.");
  return h("div", { class: "argv" }, envp.map((e) => h("div", null, e)));
}
