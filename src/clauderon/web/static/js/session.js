// A session: its terminal, a send box, its diff and audit log, and the actions.

import { ApiError, call, lines, sessionPath, text } from "./api.js";
import { ask, busy, close } from "./dialog.js";
import { age, append, clear, el } from "./dom.js";
import { onChange, refetch, sessions } from "./store.js";
import { openTerminal } from "./terminal.js";

const DIFF_SHOWN = 512 * 1024;

function field(label, value, cls) {
  const shown = value === null || value === undefined || value === "" ? "-" : String(value);
  return [el("dt", { text: label }), el("dd", { class: cls, text: shown })];
}

function diffLine(line) {
  let kind = "";
  if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) kind = "file";
  else if (line.startsWith("+")) kind = "add";
  else if (line.startsWith("-")) kind = "del";
  else if (line.startsWith("@@")) kind = "hunk";
  return el("span", { class: `diff-line ${kind}`, text: line + "\n" });
}

function workLost(session) {
  const parts = [];
  if (session.ahead) parts.push(`${session.ahead} commit(s) not on its base branch`);
  if (session.changed_files) parts.push(`${session.changed_files} changed file(s)`);
  if (session.dirty) parts.push("uncommitted changes in its worktree");
  if ((session.agent_branches || []).length) parts.push(`branches the agent made: ${session.agent_branches.join(", ")}`);
  return parts;
}

export function showSession(main, name) {
  let session = sessions.get(name);
  const title = el("h1", { text: name });
  const facts = el("dl", { class: "facts" });
  const notice = el("p", { class: "notice", role: "status", "aria-live": "polite" });
  const actions = el("div", { class: "actions", role: "toolbar", "aria-label": "Actions" });
  const termBox = el("div", { class: "terminal", id: "terminal" });
  const termStatus = el("span", { class: "term-status", role: "status" });
  const sendText = el("textarea", { id: "send-text", rows: 2, placeholder: "Message to the agent (Ctrl+Enter sends)", "aria-label": "Message to the agent" });
  const diffView = el("pre", { class: "diff", id: "diff", tabindex: 0 });
  const auditList = el("ol", { class: "audit", id: "audit" });
  let terminal = null;
  let auditAbort = null;

  const say = (message, error = false) => {
    notice.textContent = message;
    notice.classList.toggle("error", error);
    notice.setAttribute("role", error ? "alert" : "status");
  };

  async function act(label, work) {
    say(`${label}…`);
    try {
      const result = await work();
      say(`${label}: done`);
      await refetch(name);
      return result;
    } catch (error) {
      say(`${label} failed: ${error.message}`, true);
      return undefined;
    }
  }

  async function long(label, path) {
    const update = busy(label, `${label}…`);
    try {
      await lines("POST", `${path}?stream=true`, undefined, (event) => {
        if (event.type === "progress") update(event.message);
      });
      close();
      say(`${label}: done`);
    } catch (error) {
      close();
      say(`${label} failed: ${error.message}`, true);
    }
    await refetch(name).catch(() => {});
  }

  async function remove() {
    const lost = workLost(session || {});
    const body = el(
      "div",
      {},
      el("p", { text: `Delete the session “${name}”? Its container, worktree and branch go.` }),
      lost.length ? el("p", { text: "Work it still has:" }) : el("p", { text: "As last seen, it has no work that is not elsewhere." }),
      lost.length ? el("ul", {}, ...lost.map((t) => el("li", { text: t }))) : null,
      el("p", { class: "hint", text: "The daemon checks again: work that would be lost is never deleted without saving it first." }),
    );
    if ((await ask("Delete session", body, [{ label: "Delete", value: "delete", class: "danger" }, { label: "Cancel", value: null, class: "default" }])) !== "delete") return;
    let result;
    try {
      busy("Delete session", "Deleting…");
      result = await call("DELETE", sessionPath(name));
    } catch (error) {
      close();
      if (!(error instanceof ApiError) || error.code !== "would_lose_work") {
        say(`Delete failed: ${error.message}`, true);
        return;
      }
      const more = el(
        "div",
        {},
        el("p", { class: "lost", text: error.message }),
        el("p", { text: `Save that work under refs/clauderon/${name}/ in the repository, then delete?` }),
      );
      if ((await ask("Work would be lost", more, [{ label: "Save and delete", value: "force", class: "danger" }, { label: "Cancel", value: null, class: "default" }])) !== "force") return;
      try {
        busy("Delete session", "Saving the work and deleting…");
        result = await call("DELETE", sessionPath(name) + "?force=true");
      } catch (error2) {
        close();
        say(`Delete failed: ${error2.message}`, true);
        return;
      }
    }
    close();
    const saved = result && result.saved_ref ? ` Its work is saved as ${result.saved_ref}; restore it with: ${result.restore_hint}` : "";
    sessions.delete(name);
    location.hash = "#/";
    setTimeout(() => {
      const flash = document.createElement("p");
      flash.className = "notice";
      flash.setAttribute("role", "status");
      flash.textContent = `Deleted ${name}.${saved}`;
      document.getElementById("main").prepend(flash);
    }, 0);
  }

  async function merge() {
    const mode = el(
      "select",
      { id: "merge-mode", "aria-label": "How" },
      el("option", { value: "merge", text: "merge commit" }),
      el("option", { value: "squash", text: "squash" }),
      el("option", { value: "rebase", text: "rebase" }),
    );
    const body = el("div", {}, el("p", { text: `Merge ${session.branch || name} into its base branch ${session.base_branch || ""}.` }), el("label", {}, "How ", mode));
    if ((await ask("Merge", body, [{ label: "Merge", value: "merge", class: "primary" }, { label: "Cancel", value: null, class: "default" }])) !== "merge") return;
    const result = await act("Merge", () => call("POST", sessionPath(name, "merge"), { mode: mode.value }));
    if (result) say(`Merged into ${result.into || "its base branch"}${result.commit ? " as " + String(result.commit).slice(0, 12) : ""}.`);
  }

  async function pullRequest() {
    const draft = el("input", { type: "checkbox", id: "pr-draft" });
    const body = el("div", {}, el("p", { text: "Push the session's branch and open a pull request on GitHub." }), el("label", { class: "check" }, draft, " draft"));
    if ((await ask("Pull request", body, [{ label: "Open pull request", value: "pr", class: "primary" }, { label: "Cancel", value: null, class: "default" }])) !== "pr") return;
    const result = await act("Pull request", () => call("POST", sessionPath(name, "pr"), { draft: draft.checked }));
    if (result && result.url) {
      clear(notice).append(result.existing ? "Pull request (already open): " : "Pull request: ");
      const url = String(result.url);
      notice.append(/^https:\/\//.test(url) ? el("a", { href: url, rel: "noreferrer noopener", target: "_blank", text: url }) : url);
    }
  }

  function button(label, handler, attrs = {}) {
    return el("button", { type: "button", onclick: handler, ...attrs, text: label });
  }

  function renderActions() {
    clear(actions);
    if (!session) return;
    const archived = session.status === "archived";
    const running = session.state === "running";
    if (archived) actions.append(button("Unarchive", () => long("Unarchive", sessionPath(name, "unarchive"))));
    else {
      actions.append(
        running
          ? button("Stop", () => act("Stop", () => call("POST", sessionPath(name, "stop"))))
          : button("Start", () => long("Start", sessionPath(name, "start"))),
        button("Refresh", () => long("Refresh", sessionPath(name, "refresh")), { title: "Re-create the container from the session's record (the worktree stays)" }),
        button("Archive", () => act("Archive", () => call("POST", sessionPath(name, "archive"))), { title: "Remove the container, keep the worktree" }),
        button("Merge…", merge),
        button("Pull request…", pullRequest),
      );
    }
    actions.append(button("Delete…", remove, { class: "danger", id: "delete" }));
  }

  function renderFacts() {
    clear(facts);
    if (!session) {
      append(facts, field("Session", "not found (deleted?)"));
      return;
    }
    append(
      facts,
      field("Repository", session.repo + (session.subdirectory ? "/" + session.subdirectory : "")),
      field("Branch", session.branch),
      field("State", session.state || session.status),
      field("Agent", `${session.agent} — ${(session.agent_status || "-").replace("_", " ")}${session.agent_status_reason ? " (" + session.agent_status_reason + ")" : ""}`),
      field("Work", [session.ahead != null ? `${session.ahead} ahead` : null, session.behind ? `${session.behind} behind` : null, session.changed_files != null ? `${session.changed_files} files changed` : null, session.dirty ? "uncommitted changes" : null].filter(Boolean).join(", ")),
      field("Image", session.image),
      field("Age", age(session.created_at)),
      field("Prompt", session.prompt, "prompt"),
    );
    for (const warning of session.warnings || []) facts.append(el("dd", { class: "warning", text: warning }));
  }

  async function loadDiff() {
    diffView.textContent = "Loading…";
    try {
      const { text: body, cut } = await text(sessionPath(name, "diff"), DIFF_SHOWN);
      clear(diffView);
      if (!body) diffView.textContent = "No changes.";
      else for (const line of body.split("\n")) diffView.append(diffLine(line));
      if (cut) diffView.append(el("span", { class: "diff-line file", text: "… (cut: see `clauderon diff`)" }));
    } catch (error) {
      diffView.textContent = `No diff: ${error.message}`;
    }
  }

  function auditEntry(entry) {
    const when = entry.ts || "";
    const what = [entry.method, entry.host, entry.path].filter(Boolean).join(" ") || JSON.stringify(entry);
    const verdict = [entry.decision, entry.status].filter((x) => x !== undefined && x !== null).join(" ");
    return el("li", {}, el("span", { class: "when", text: String(when).replace("T", " ").slice(0, 19) }), el("span", { class: "verdict", text: String(verdict) }), el("span", { class: "what", text: what }));
  }

  async function followAudit() {
    if (auditAbort) auditAbort.abort();
    auditAbort = new AbortController();
    clear(auditList);
    try {
      await lines("GET", `/api/audit?session=${encodeURIComponent(name)}&limit=200&follow=true`, undefined, (entry) => {
        auditList.prepend(auditEntry(entry));
        while (auditList.children.length > 500) auditList.lastChild.remove();
      }, auditAbort.signal);
    } catch (error) {
      if (error.name !== "AbortError") auditList.append(el("li", { class: "error", text: `No audit log: ${error.message}` }));
    }
  }

  // Tabs: the terminal is the default; the others load when first shown.
  const panels = {
    terminal: el("section", { class: "panel", id: "panel-terminal", role: "tabpanel", "aria-label": "Terminal" }),
    diff: el("section", { class: "panel", id: "panel-diff", role: "tabpanel", "aria-label": "Diff", hidden: true }),
    audit: el("section", { class: "panel", id: "panel-audit", role: "tabpanel", "aria-label": "Audit log", hidden: true }),
    details: el("section", { class: "panel", id: "panel-details", role: "tabpanel", "aria-label": "Details", hidden: true }),
  };
  const tabs = el("div", { class: "tabs", role: "tablist" });
  const select = (key) => {
    for (const [k, panel] of Object.entries(panels)) panel.hidden = k !== key;
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.key === key));
    if (key === "diff") loadDiff();
    if (key === "audit") followAudit();
    else if (auditAbort) auditAbort.abort();
    if (key === "terminal" && terminal) terminal.focus();
  };
  for (const [key, label] of [["terminal", "Terminal"], ["diff", "Diff"], ["audit", "Audit log"], ["details", "Details"]]) {
    tabs.append(el("button", { type: "button", role: "tab", "data-key": key, id: `tab-${key}`, onclick: () => select(key), text: label }));
  }

  const sendButton = button("Send", send, { class: "primary", id: "send" });
  async function send() {
    const message = sendText.value;
    if (!message.trim()) return;
    sendButton.disabled = true;
    try {
      await call("POST", sessionPath(name, "send"), { text: message });
      sendText.value = "";
      say("Sent.");
    } catch (error) {
      say(`Not sent: ${error.message}`, true);
    } finally {
      sendButton.disabled = false;
    }
  }
  sendText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  const copyButton = button("Copy", async () => say((await terminal?.copy()) ? "Copied the selection." : "Select text in the terminal first."), { title: "Copy the terminal's selection (Ctrl+Shift+C)" });

  panels.terminal.append(
    termBox,
    el("div", { class: "term-bar" }, termStatus, copyButton, el("span", { class: "hint", text: "Ctrl+] leaves the terminal" })),
    el("div", { class: "send" }, sendText, sendButton),
  );
  panels.diff.append(el("div", { class: "panel-bar" }, button("Reload", loadDiff)), diffView);
  panels.audit.append(el("p", { class: "hint", text: "Requests the session made through the proxy, newest first, live." }), auditList);
  panels.details.append(facts);

  clear(main).append(
    el("nav", { class: "crumbs" }, el("a", { href: "#/", text: "← Sessions" })),
    el("div", { class: "session-title" }, title, el("span", { class: "badge", id: "badge" })),
    notice,
    actions,
    tabs,
    ...Object.values(panels),
  );

  const update = () => {
    session = sessions.get(name);
    const badge = main.querySelector("#badge");
    if (badge) {
      badge.textContent = session ? `${session.state || session.status} · ${(session.agent_status || "-").replace("_", " ")}` : "gone";
      badge.className = `badge status-${session ? session.agent_status : "gone"}`;
    }
    renderActions();
    renderFacts();
  };
  const stop = onChange((changed) => {
    if (changed === null || changed === name) update();
  });
  update();
  if (!session) refetch(name).catch((error) => say(error.message, true));
  terminal = openTerminal(termBox, name, {
    onStatus: (message) => (termStatus.textContent = message),
    onLeave: () => sendText.focus(),
  });
  select("terminal");

  return () => {
    stop();
    if (auditAbort) auditAbort.abort();
    terminal.close();
    close();
  };
}
