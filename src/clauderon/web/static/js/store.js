// Every session the daemon knows, kept live from /ws/events: an event names a session,
// which is then read again (as the TUI does); nothing polls.

import { ApiError, call, sessionPath, socket } from "./api.js";

const WAITING = ["waiting_approval", "waiting_input"];
const RANK = { waiting_approval: 0, waiting_input: 1, error: 2, working: 3, idle: 4 };

export const sessions = new Map();
const listeners = new Set();
let connected = false;

export function isWaiting(session) {
  return WAITING.includes(session.agent_status);
}

export function sorted({ archived = false } = {}) {
  return [...sessions.values()]
    .filter((s) => archived || s.status !== "archived")
    .sort((a, b) => {
      const rank = (RANK[a.agent_status] ?? 5) - (RANK[b.agent_status] ?? 5);
      if (rank) return rank;
      const age = Date.parse(b.created_at || 0) - Date.parse(a.created_at || 0);
      return age || a.name.localeCompare(b.name);
    });
}

// Repositories the daemon has sessions for, most recent first (the create form offers them).
export function repositories() {
  const seen = new Map();
  for (const s of [...sessions.values()].sort((a, b) => Date.parse(b.created_at || 0) - Date.parse(a.created_at || 0))) {
    if (s.repo && !seen.has(s.repo)) seen.set(s.repo, s);
  }
  return [...seen.keys()];
}

export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed(name) {
  for (const listener of listeners) listener(name);
}

function status(text, ok) {
  connected = ok;
  const node = document.getElementById("connection");
  node.textContent = text;
  node.classList.toggle("down", !ok);
}

export function isConnected() {
  return connected;
}

export async function reload() {
  const all = await call("GET", "/api/sessions?archived=true");
  sessions.clear();
  for (const s of all) sessions.set(s.name, s);
  changed(null);
}

export async function refetch(name) {
  try {
    sessions.set(name, await call("GET", sessionPath(name)));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    sessions.delete(name);
  }
  changed(name);
}

export function follow() {
  let delay = 500;
  const open = () => {
    const ws = socket("/ws/events");
    ws.onopen = async () => {
      delay = 500;
      status("live", true);
      try {
        await reload(); // what changed while the socket was down
      } catch (error) {
        status(`cannot list sessions: ${error.message}`, false);
      }
    };
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "session_deleted") {
        sessions.delete(event.session);
        changed(event.session);
      } else if (event.session) {
        refetch(event.session).catch(() => {});
      }
    };
    ws.onclose = (event) => {
      if (event.code === 4401) {
        status("logged out: run `clauderon web` for a new login link", false);
        return;
      }
      status("reconnecting…", false);
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
}
