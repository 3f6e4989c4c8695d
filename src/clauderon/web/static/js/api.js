// The daemon's API, as the CLI and the TUI use it. The session cookie goes with every
// request by itself (HttpOnly: no script reads it); what changes something also carries
// the CSRF token from /web/session. No token is ever put into a URL or into storage.

let csrf = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function start() {
  const answer = await fetch("/web/session", { credentials: "same-origin" });
  if (!answer.ok) throw new ApiError(answer.status, "unauthorized", "not logged in");
  csrf = (await answer.json()).csrf;
}

function headers(method, body) {
  const result = {};
  if (method !== "GET" && method !== "HEAD") result["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) result["Content-Type"] = "application/json";
  return result;
}

async function failure(answer) {
  const text = await answer.text();
  try {
    const data = JSON.parse(text);
    return new ApiError(answer.status, data.code || "error", data.message || text);
  } catch {
    return new ApiError(answer.status, "error", text || answer.statusText);
  }
}

async function send(method, path, body, signal) {
  let answer;
  try {
    answer = await fetch(path, {
      method,
      headers: headers(method, body),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "cannot reach the daemon");
  }
  if (!answer.ok) throw await failure(answer);
  return answer;
}

export async function call(method, path, body) {
  const answer = await send(method, path, body);
  const text = await answer.text();
  return text ? JSON.parse(text) : null;
}

export async function text(path, limit) {
  const answer = await send("GET", path);
  const reader = answer.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size > limit) {
      reader.cancel();
      break;
    }
  }
  const all = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, Math.max(0, all.length - at));
    all.set(part, at);
    at += part.length;
  }
  return { text: new TextDecoder().decode(all), cut: size > limit };
}

// A JSON-lines stream: each line goes to onLine; a long operation ends with a `result`
// line (returned) or an `error` line (thrown).
export async function lines(method, path, body, onLine, signal) {
  const answer = await send(method, path, body, signal);
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let result = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const event = JSON.parse(line);
      if (event.type === "error") throw new ApiError(400, event.code, event.message);
      if (event.type === "result") result = event.result;
      else onLine(event);
    }
  }
  return result;
}

export function socket(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(`${scheme}//${location.host}${path}`);
}

export function sessionPath(name, ...rest) {
  return ["/api/sessions", encodeURIComponent(name), ...rest].join("/");
}

export async function logout() {
  await call("POST", "/web/logout");
}
