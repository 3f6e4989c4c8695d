// The agent's terminal: xterm.js on /ws/console/<name>. Typing and paste go to the agent
// as input, the viewer's size follows the window (never narrower than 80 columns: on a
// phone the terminal scrolls sideways instead of squeezing the agent), and a selection
// can be copied (Ctrl+Shift+C or the Copy button). Ctrl+] leaves the terminal for the
// keyboard.

import { Terminal } from "/static/vendor/xterm.mjs";
import { FitAddon } from "/static/vendor/addon-fit.mjs";
import { socket } from "./api.js";

const MIN_COLS = 80;

// xterm.js sizes its grid with <style> elements it makes; the page's Content-Security-
// Policy allows only those carrying the page's nonce, which they get here.
const nonce = document.querySelector('meta[name="style-nonce"]')?.content || "";
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (tag, options) {
  const node = createElement.call(this, tag, options);
  if (String(tag).toLowerCase() === "style") node.nonce = nonce;
  return node;
};

// It colours cells with style attributes, which that policy refuses too; set through the
// CSSOM instead (allowed), they carry the same declarations.
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (name, value) {
  if (String(name).toLowerCase() === "style" && this instanceof HTMLElement) {
    this.style.cssText = String(value);
    return;
  }
  setAttribute.call(this, name, value);
};

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea"); // not a secure context: the old way
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

export function openTerminal(container, name, { onStatus, onLeave }) {
  const term = new Terminal({
    cursorBlink: true,
    convertEol: false,
    scrollback: 5000,
    fontSize: 13,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    theme: { background: "#0d1117", foreground: "#e6edf3" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  let ws = null;
  let closed = false;
  const encoder = new TextEncoder();

  const size = () => {
    const proposed = fit.proposeDimensions();
    if (!proposed || !proposed.cols || !proposed.rows) return null;
    return { cols: Math.max(MIN_COLS, proposed.cols), rows: Math.max(5, proposed.rows) };
  };
  const sendJson = (message) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  };
  const resize = () => {
    const wanted = size();
    if (wanted && (wanted.cols !== term.cols || wanted.rows !== term.rows)) term.resize(wanted.cols, wanted.rows);
  };

  term.onResize(({ cols, rows }) => sendJson({ type: "resize", rows, cols }));
  term.onData((data) => sendJson({ type: "input", data_b64: toBase64(encoder.encode(data)) }));
  term.onBinary((data) => sendJson({ type: "input", data_b64: btoa(data) }));
  term.attachCustomKeyEventHandler((event) => {
    if (event.type !== "keydown") return true;
    if (event.ctrlKey && event.shiftKey && event.key.toLowerCase() === "c") {
      if (term.hasSelection()) copyText(term.getSelection());
      return false;
    }
    if (event.ctrlKey && event.key === "]") {
      onLeave();
      return false;
    }
    return true;
  });

  const connect = () => {
    resize();
    ws = socket(`/ws/console/${encodeURIComponent(name)}?rows=${term.rows}&cols=${term.cols}`);
    ws.onopen = () => onStatus("attached");
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "snapshot") {
        term.reset();
        term.write(fromBase64(event.data));
      } else if (event.type === "output") {
        term.write(fromBase64(event.data));
      } else if (event.type === "exit") {
        onStatus("the agent's terminal ended");
      } else if (event.type === "error") {
        onStatus(event.message);
      }
    };
    ws.onclose = (event) => {
      if (closed) return;
      if (event.code === 4404 || event.code === 4409) return; // said why already
      onStatus(event.code === 4401 ? "logged out" : "terminal disconnected — reconnecting…");
      if (event.code !== 4401) setTimeout(() => !closed && connect(), 2000);
    };
  };
  const observer = new ResizeObserver(() => resize());
  observer.observe(container);
  connect();
  return {
    term,
    focus: () => term.focus(),
    copy: () => (term.hasSelection() ? copyText(term.getSelection()) : Promise.resolve(false)),
    close() {
      closed = true;
      observer.disconnect();
      if (ws) ws.close();
      term.dispose();
    },
  };
}
