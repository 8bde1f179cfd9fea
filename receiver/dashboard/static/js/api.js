// The REST API client: the token, errors as kinds the views can explain.

const TOKEN_KEY = "csm.token";
const ROLE_KEY = "csm.role";
export const events = new EventTarget();

export class ApiError extends Error {
  constructor(kind, status, message, path) {
    super(message);
    this.kind = kind; // unreachable | unauthorized | forbidden | missing | bad | server | timeout
    this.status = status;
    this.path = path;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.removeItem(ROLE_KEY);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROLE_KEY);
}

export function getRole() {
  return sessionStorage.getItem(ROLE_KEY);
}

export function setRole(role) {
  if (role) sessionStorage.setItem(ROLE_KEY, role);
}

function status(state, text) {
  events.dispatchEvent(new CustomEvent("status", { detail: { state, text } }));
}

function kindOf(code) {
  if (code === 401) return "unauthorized";
  if (code === 403) return "forbidden";
  if (code === 404) return "missing";
  if (code === 504) return "timeout";
  if (code >= 500) return "server";
  return "bad";
}

export function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// VM names are unique per host only: the VM pages open with ?host= and
// every request about that VM carries it, until another VM is opened.
let vmScope = null;

/** Scope VM requests to ``host`` (kept while the same VM stays open). */
export function scopeVm(name, host) {
  if (name && host) vmScope = { name, host };
  else if (!name || vmScope?.name !== name) vmScope = null;
}

function scoped(path, query) {
  if (!vmScope || query?.host) return query;
  const prefix = `/api/v1/vms/${encodeURIComponent(vmScope.name)}`;
  if (path !== prefix && !path.startsWith(prefix + "/")) return query;
  return { ...query, host: vmScope.host };
}

export async function api(path, { method = "GET", body, signal, query } = {}) {
  let url = path;
  query = scoped(path, query);
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    if (qs) url += (url.includes("?") ? "&" : "?") + qs;
  }
  const headers = authHeaders({ Accept: "application/json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    const message = `The receiver at ${location.host} cannot be reached. It may be stopped or restarting; retrying.`;
    status("down", "unreachable");
    throw new ApiError("unreachable", 0, message, path);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const kind = kindOf(response.status);
    let message = (data && (data.detail || data.title)) || `${response.status} ${response.statusText}`;
    if (kind === "unauthorized") {
      message = "The receiver rejected this token. Sign in with a valid one.";
      status("auth", "token rejected");
      events.dispatchEvent(new CustomEvent("unauthorized", { detail: { message } }));
    } else {
      status("ok", "connected");
    }
    throw new ApiError(kind, response.status, message, path);
  }
  status("ok", "connected");
  return data;
}

/** Every page of a list endpoint, up to ``max`` items. */
export async function listAll(path, { query = {}, signal, max = 10000 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(path, { signal, query: { limit: 1000, ...query, cursor } });
    items.push(...(page.items || []));
    cursor = page.next;
  } while (cursor && items.length < max);
  return items;
}

export function describeError(err, what) {
  if (!err) return "";
  if (err.kind === "missing" && what) return `${what} not available on this receiver (${err.path} answered 404).`;
  if (err.kind === "forbidden") return `Not allowed with this token: ${err.message}`;
  return err.message || String(err);
}
