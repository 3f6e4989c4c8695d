// The web UI: three views on hash routes (#/ the list, #/s/<name> a session, #/new the
// create form), all fed by the daemon's API and /ws/events.

import { logout, start } from "./api.js";
import { age, basename, clear, el, route } from "./dom.js";
import { showCreate } from "./create.js";
import { showSession } from "./session.js";
import { follow, isWaiting, onChange, sorted } from "./store.js";

const main = document.getElementById("main");
let leave = null; // the current view's clean-up
let showArchived = false;

function work(session) {
  const parts = [];
  if (session.ahead !== null && session.ahead !== undefined) parts.push(`${session.ahead} ahead`);
  if (session.changed_files !== null && session.changed_files !== undefined) parts.push(`${session.changed_files} files`);
  if (session.dirty) parts.push("uncommitted");
  return parts.join(", ") || "-";
}

function row(session) {
  const waiting = isWaiting(session);
  return el(
    "li",
    { class: "session-row" + (waiting ? " waiting" : ""), "data-name": session.name },
    el(
      "a",
      { href: route("s", session.name), class: "row-link" },
      el("span", { class: "name", text: session.name }),
      el("span", { class: "repo", title: session.repo, text: basename(session.repo) + (session.subdirectory ? "/" + session.subdirectory : "") }),
      el("span", { class: `state state-${session.state}`, text: session.state || session.status }),
      el("span", { class: `status status-${session.agent_status}`, text: (session.agent_status || "-").replace("_", " ") }),
      el("span", { class: "work", text: work(session) }),
      el("span", { class: "age", title: session.created_at, text: age(session.created_at) }),
    ),
  );
}

function showList() {
  const list = el("ul", { class: "sessions", id: "sessions", "aria-label": "Sessions" });
  const empty = el("p", { class: "empty", text: "No sessions yet. Start one with “New session”." });
  const toggle = el("input", { type: "checkbox", id: "show-archived", checked: showArchived });
  toggle.addEventListener("change", () => {
    showArchived = toggle.checked;
    render();
  });
  const head = el(
    "div",
    { class: "session-head", "aria-hidden": "true" },
    ...["Name", "Repository", "State", "Agent", "Work", "Age"].map((t) => el("span", { text: t })),
  );
  const render = () => {
    clear(list);
    const shown = sorted({ archived: showArchived });
    for (const session of shown) list.append(row(session));
    empty.hidden = shown.length > 0;
    head.hidden = shown.length === 0;
  };
  clear(main).append(
    el("div", { class: "toolbar" }, el("h1", { text: "Sessions" }), el("label", { class: "check" }, toggle, " archived")),
    head,
    list,
    empty,
  );
  render();
  const stop = onChange(render);
  const tick = setInterval(render, 30000); // ages
  return () => {
    stop();
    clearInterval(tick);
  };
}

function navigate() {
  if (leave) leave();
  leave = null;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "s" && parts[1]) leave = showSession(main, parts[1]);
  else if (parts[0] === "new") leave = showCreate(main);
  else leave = showList();
  // Keyboard users start in the new view (unless it chose a field itself).
  if (!main.contains(document.activeElement) || document.activeElement === document.body) main.focus({ preventScroll: true });
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select, .xterm, dialog");
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "n") location.hash = "#/new";
  else if (event.key === "g") location.hash = "#/";
});

async function boot() {
  try {
    await start();
  } catch (error) {
    clear(main).append(
      el("p", { class: "error", role: "alert", text: "Not logged in. Run `clauderon web` and open the login link it prints." }),
    );
    document.getElementById("connection").textContent = "logged out";
    return;
  }
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await logout();
    } finally {
      location.replace("/"); // the page without its cookie says how to log in again
    }
  });
  follow();
  window.addEventListener("hashchange", navigate);
  navigate();
}

boot();
