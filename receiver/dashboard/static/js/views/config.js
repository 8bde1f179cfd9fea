// A VM's collector configuration: what is desired, what the guest answered.

import { api, describeError, getRole } from "../api.js";
import { h, clear, panel } from "../dom.js";
import { time } from "../format.js";

const PARTS = ["container_config", "execute_config", "memexec_config"];

/** The ConfigurationRequest inside a GET answer, whatever wraps it. */
export function requestOf(body) {
  if (!body) return {};
  if (PARTS.some((p) => p in body)) return body;
  for (const key of ["config", "desired", "request"]) if (body[key] && typeof body[key] === "object") return requestOf(body[key]);
  return {};
}

/** The guest's ConfigurationResponse inside an answer, if there is one. */
export function responseOf(body) {
  if (!body || typeof body !== "object") return null;
  if ("error" in body && ("msg" in body || "version" in body || "kernel_version" in body)) return body;
  for (const key of ["answer", "last_answer", "config_response"]) {
    if (body[key] && typeof body[key] === "object") return responseOf(body[key]);
  }
  return null;
}

function answeredAt(response) {
  // Stored answers carry the receiver's clock in seconds since the epoch.
  const at = response.received_at ?? response.answered_at ?? response.at;
  if (at === undefined || at === null) return null;
  return time(typeof at === "number" ? new Date(at * 1000).toISOString() : at);
}

function describeAnswer(response) {
  const ok = (response.error || "NO_ERROR") === "NO_ERROR" || response.error === 0;
  const parts = [ok ? "accepted (NO_ERROR)" : `refused (${response.error})`];
  if (response.msg) parts.push(`“${response.msg}”`);
  if (response.version !== undefined) parts.push(`CSM version ${response.version}`);
  // v2 guests leave the kernel out (0).
  if (response.kernel_version) {
    const k = Number(response.kernel_version);
    parts.push(`kernel ${k >> 16}.${(k >> 8) & 255}.${k & 255}`);
  }
  return { ok, text: parts.join(" · ") };
}

export function configPanel(name, ctx, signal) {
  const path = `/api/v1/vms/${encodeURIComponent(name)}/config`;
  const body = h("div", null, h("div", { class: "empty" }, "Loading…"));
  const ack = h("div", { id: "config-ack" });
  const result = h("div", { id: "config-result" });
  const meta = h("span", { class: "count", id: "config-meta" });
  const node = panel("Configuration", h("div", null, body, ack, result), { id: "vm-config", flush: false, count: meta });
  let lastAnswer = null;
  let freshAnswer = false;

  function field(id, label, input) {
    input.id = id;
    return h("label", { class: "field" }, h("span", null, label), input);
  }

  function check(id, label, checked) {
    return h("label", { class: "check" }, h("input", { type: "checkbox", id, checked: Boolean(checked) }), label);
  }

  function renderForm(request, readOnly) {
    const exec = request.execute_config;
    const form = h("form", { id: "config-form" },
      h("fieldset", { style: "border:none;padding:0;margin:0", disabled: readOnly },
        h("div", { style: "margin-bottom:10px" },
          check("cfg-container", "Container events", request.container_config?.enabled),
          check("cfg-execute", "Exec events", exec?.enabled),
          check("cfg-memexec", "Executable mappings", request.memexec_config?.enabled),
        ),
        h("div", { class: "form-row" },
          field("cfg-argv-limit", "argv budget (bytes; 0 sends none)", h("input", { type: "number", min: 0, max: 4294967295, value: String(exec?.argv_limit ?? 0) })),
          field("cfg-envp-limit", "envp budget (bytes)", h("input", { type: "number", min: 0, max: 4294967295, value: String(exec?.envp_limit ?? 0) })),
        ),
        field("cfg-envp-allow", "Environment variables to keep (comma separated; empty keeps all)", h("input", { type: "text", value: (exec?.envp_allowlist || []).join(", ") })),
        readOnly
          ? h("div", { class: "notice warn", id: "config-readonly" }, "Read only: this is a viewer token. An operator token can change the configuration.")
          : h("div", { class: "toolbar", style: "margin:4px 0 0" }, h("button", { class: "btn primary", type: "submit", id: "config-push" }, "Push to guest"), h("span", { class: "muted" }, "The guest replaces its whole configuration with this.")),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      push(form);
    });
    return form;
  }

  function collect(form) {
    const value = (id) => form.querySelector("#" + id);
    const request = {};
    if (value("cfg-container").checked) request.container_config = { enabled: true };
    if (value("cfg-memexec").checked) request.memexec_config = { enabled: true };
    const allow = value("cfg-envp-allow").value.split(",").map((s) => s.trim()).filter(Boolean);
    request.execute_config = {
      enabled: value("cfg-execute").checked,
      argv_limit: Number(value("cfg-argv-limit").value || 0),
      envp_limit: Number(value("cfg-envp-limit").value || 0),
      envp_allowlist: allow,
    };
    return request;
  }

  async function push(form) {
    const button = form.querySelector("#config-push");
    button.disabled = true;
    clear(result).append(h("div", { class: "notice" }, "Pushing to the guest and waiting for its answer…"));
    try {
      const answer = await api(path, { method: "PUT", body: collect(form), signal });
      const response = responseOf(answer);
      const status = answer?.status || answer?.state;
      if (response) {
        const { ok, text } = describeAnswer(response);
        clear(result).append(h("div", { class: `notice ${ok ? "ok" : "bad"}`, id: "config-answer" }, h("strong", null, "Guest answered: "), text));
        freshAnswer = true;
        setLastAnswer(response);
      } else {
        const why = answer?.detail || "the guest has not answered yet";
        freshAnswer = false;
        clear(result).append(h("div", { class: "notice warn", id: "config-answer" }, `Stored as generation ${answer?.generation ?? "?"}${status ? ` (${status})` : ""}: ${why}.`));
      }
      await load({ keepResult: true });
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err.kind === "forbidden") {
        clear(result).append(h("div", { class: "notice bad", id: "config-answer" }, "Refused: this token may only view. Pushing configuration needs an operator token."));
      } else if (err.kind === "timeout") {
        clear(result).append(h("div", { class: "notice warn", id: "config-answer" }, `The guest did not answer in time: ${err.message}`));
      } else {
        clear(result).append(h("div", { class: "notice bad", id: "config-answer" }, describeError(err, "Configuration is")));
      }
    } finally {
      button.disabled = false;
    }
  }

  function setLastAnswer(response) {
    if (!response) return;
    lastAnswer = response;
    const { ok, text } = describeAnswer(response);
    // Right after a push its answer is on show; the same words twice say nothing.
    if (freshAnswer) {
      clear(ack);
      return;
    }
    const at = answeredAt(response);
    clear(ack).append(h("div", { class: `notice ${ok ? "ok" : "bad"}` }, h("strong", null, "Last acknowledged by the guest: "), text, at ? ` · ${at}` : ""));
  }

  async function load({ keepResult = false } = {}) {
    try {
      const answer = await api(path, { signal });
      const readOnly = (ctx.role() || getRole()) === "viewer";
      clear(body).append(renderForm(requestOf(answer), readOnly));
      const bits = [];
      if (answer?.source) bits.push(answer.source === "vm" ? "set for this VM" : `from ${answer.source}`);
      if (answer?.generation !== undefined) bits.push(`generation ${answer.generation}`);
      if (answer?.updated_by) bits.push(`by ${answer.updated_by}`);
      if (answer?.updated_at) bits.push(time(answer.updated_at, { seconds: false }));
      if (answer?.pending) bits.push("not yet acknowledged");
      meta.textContent = bits.join(" · ");
      const response = responseOf(answer);
      if (response) setLastAnswer(response);
      if (!keepResult) clear(result);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(body).append(h("div", { class: err.kind === "missing" ? "unavailable" : "error-line" }, describeError(err, "Configuration is")));
      if (lastAnswer) setLastAnswer(lastAnswer);
    }
  }

  return { node, load, setLastAnswer };
}
