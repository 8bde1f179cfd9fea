// Server-sent events over fetch, because EventSource cannot send a token.

import { authHeaders, ApiError, events } from "./api.js";

const RETRY_MS = 3000;

/** Follow ``path``; ``onMessage({event, id, data})``; ``onState(state, detail)``. */
export function follow(path, { onMessage, onState }) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;

  async function run() {
    while (!stopped) {
      try {
        onState("connecting");
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if (!response.ok) {
          const kind = response.status === 401 ? "unauthorized" : response.status === 404 ? "missing" : "bad";
          if (kind === "unauthorized") events.dispatchEvent(new CustomEvent("unauthorized", { detail: { message: "The receiver rejected this token." } }));
          throw new ApiError(kind, response.status, `${path} answered ${response.status}`, path);
        }
        onState("open");
        await read(response.body, (message) => {
          if (message.id) lastId = message.id;
          onMessage(message);
        });
        if (!stopped) onState("closed");
      } catch (err) {
        if (stopped || err.name === "AbortError") return;
        if (err.kind === "missing" || err.kind === "unauthorized") {
          onState(err.kind, err);
          return;
        }
        onState("down", err);
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

async function read(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (message.data.length) emit({ event: message.event, id: message.id, data: message.data.join("\n") });
        message = { event: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") message.event = val;
      else if (field === "data") message.data.push(val);
      else if (field === "id") message.id = val;
    }
  }
}
