// Entry point: sign-in, the connection indicator and the fragment router.

import { api, clearToken, events, getRole, getToken, scopeVm, setRole, setToken } from "./api.js";
import { clear, h } from "./dom.js";
import * as fleet from "./views/fleet.js";
import * as vm from "./views/vm.js";
import * as tree from "./views/tree.js";
import * as process from "./views/process.js";
import * as findings from "./views/findings.js";
import * as live from "./views/live.js";

const ROUTES = [
  [/^\/?(fleet)?$/, fleet, "fleet"],
  [/^\/vm\/([^/]+)$/, vm, "fleet"],
  [/^\/vm\/([^/]+)\/tree$/, tree, "fleet"],
  [/^\/vm\/([^/]+)\/process\/([0-9a-fA-F]{32})$/, process, "fleet"],
  [/^\/findings$/, findings, "findings"],
  [/^\/live$/, live, "live"],
];

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const conn = document.getElementById("conn");
const connText = document.getElementById("conn-text");
const who = document.getElementById("who");
const logout = document.getElementById("logout");
let unmount = null;
let loginMessage = null;

function takeTokenFromFragment() {
  const match = /^#token=([^&]+)(?:&(.*))?$/.exec(location.hash);
  if (!match) return;
  setToken(decodeURIComponent(match[1]));
  // Drop the token from the address bar and the history at once.
  history.replaceState(null, "", location.pathname + location.search + (match[2] ? "#" + match[2] : "#/fleet"));
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, query = ""] = raw.split("?");
  return { path: decodeURI(path), query: new URLSearchParams(query) };
}

export function navigate(path, query) {
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString() : "";
  location.hash = path + (qs ? "?" + qs : "");
}

/** Change the fragment's query without re-rendering the view. */
export function replaceQuery(query) {
  const { path } = parseHash();
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  history.replaceState(null, "", "#" + path + (qs ? "?" + qs : ""));
}

function setBanner(text, kind = "") {
  banner.textContent = text || "";
  banner.className = `banner ${kind}`.trim();
  banner.hidden = !text;
}

events.addEventListener("status", (event) => {
  const { state, text } = event.detail;
  conn.dataset.state = state;
  connText.textContent = text;
  if (state === "down") setBanner(`Receiver unreachable at ${location.host}: the dashboard keeps retrying.`);
  else if (state === "ok" && banner.textContent.startsWith("Receiver unreachable")) setBanner("");
});

events.addEventListener("unauthorized", (event) => {
  clearToken();
  loginMessage = event.detail.message;
  route();
});

logout.addEventListener("click", () => {
  clearToken();
  loginMessage = "Signed out. The token was removed from this tab.";
  route();
});

async function identify() {
  try {
    const me = await api("/api/v1/whoami");
    setRole(me.role);
    who.textContent = me.label && me.label !== me.role ? `${me.label} · ${me.role}` : me.role;
  } catch (err) {
    if (err.kind !== "missing") throw err;
    who.textContent = getRole() || "";
  }
}

function showLogin() {
  unmount?.();
  unmount = null;
  view.className = "view";
  conn.dataset.state = "idle";
  connText.textContent = "not signed in";
  who.textContent = "";
  logout.hidden = true;
  document.getElementById("nav").hidden = true;
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", spellcheck: "false", placeholder: "API token", required: true });
  const message = h("div", { class: loginMessage ? "notice bad" : "notice", id: "login-message", hidden: !loginMessage }, loginMessage || "");
  const button = h("button", { class: "btn primary", type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "login", id: "login", novalidate: true },
    h("section", { class: "panel" }, h("div", { class: "body" },
      h("h1", null, "Sign in to the receiver"),
      h("p", null, "Paste an operator or viewer token. It stays in this browser tab only (session storage) and is sent to this receiver alone."),
      h("label", { class: "field" }, h("span", null, "Token"), input),
      button,
      message,
    )),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    message.hidden = false;
    message.className = "notice";
    message.textContent = "Checking the token…";
    setToken(token);
    try {
      await api("/api/v1/vms", { query: { limit: 1 } });
      loginMessage = null;
      await identify();
      route();
    } catch (err) {
      clearToken();
      message.className = "notice bad";
      message.textContent = err.kind === "unauthorized" ? "The receiver rejected this token. Check it and try again." : err.message;
      button.disabled = false;
    }
  });
  clear(view).append(form);
  input.focus();
}

function route() {
  if (!getToken()) return showLogin();
  logout.hidden = false;
  document.getElementById("nav").hidden = false;
  const { path, query } = parseHash();
  unmount?.();
  unmount = null;
  setBanner(banner.textContent.startsWith("Receiver unreachable") ? banner.textContent : "");
  for (const [pattern, module, nav] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    view.className = module.fill ? "view fill" : "view";
    clear(view);
    const params = match.slice(1).map((part) => (part === undefined ? part : decodeURIComponent(part)));
    scopeVm(path.startsWith("/vm/") ? params[0] : null, query.get("host"));
    unmount = module.mount(view, params, query, { navigate, replaceQuery, role: () => getRole() }) || null;
    return;
  }
  clear(view).append(h("div", { class: "empty" }, "No such page. ", h("a", { href: "#/fleet" }, "Go to the fleet.")));
}

takeTokenFromFragment();
window.addEventListener("hashchange", () => {
  takeTokenFromFragment();
  route();
});
if (getToken()) identify().catch(() => {}).finally(route);
else route();
