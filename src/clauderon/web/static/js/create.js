// The create form: repository (one the daemon has sessions for, or any path on the
// daemon's machine), prompt, agent, image, limits. Progress comes from the daemon as it
// works; an error stays in the form (the daemon has undone every step already).

import { ApiError, call, lines } from "./api.js";
import { clear, el } from "./dom.js";
import { refetch, repositories } from "./store.js";

function input(id, label, attrs = {}) {
  const node = el("input", { id, name: id, ...attrs });
  return [node, el("div", { class: "field" }, el("label", { for: id, text: label }), node)];
}

export function showCreate(main) {
  const known = repositories();
  const datalist = el("datalist", { id: "known-repos" }, ...known.map((repo) => el("option", { value: repo })));
  const [repo, repoField] = input("repo", "Repository (a path on the daemon's machine)", { list: "known-repos", required: true, autocomplete: "off", value: known[0] || "", spellcheck: "false" });
  const prompt = el("textarea", { id: "prompt", name: "prompt", rows: 6, required: true, placeholder: "What should the agent do?" });
  const agent = el("select", { id: "agent", name: "agent" }, el("option", { value: "claude", text: "Claude Code" }), el("option", { value: "codex", text: "Codex" }));
  const [image, imageField] = input("image", "Image", { placeholder: "default (clauderon-base:bookworm)", spellcheck: "false" });
  const [cpu, cpuField] = input("cpu", "CPU limit", { placeholder: "e.g. 2", inputmode: "decimal" });
  const [memory, memoryField] = input("memory", "Memory limit", { placeholder: "e.g. 8g" });
  const [base, baseField] = input("base", "Base branch", { placeholder: "the checkout's HEAD", spellcheck: "false" });
  const [name, nameField] = input("name", "Name", { placeholder: "from the prompt", spellcheck: "false" });
  const error = el("p", { class: "error", id: "form-error", role: "alert", hidden: true });
  const bar = el("progress", { id: "create-progress", hidden: true });
  const progressText = el("p", { class: "progress-text", id: "create-progress-text", role: "status", "aria-live": "polite" });
  const createButton = el("button", { type: "submit", class: "primary", id: "create", text: "Create" });
  const cancelButton = el("button", { type: "button", id: "cancel", text: "Cancel" });
  let requestId = null;

  const form = el(
    "form",
    { class: "create-form", id: "create-form", novalidate: true },
    el("h1", { text: "New session" }),
    repoField,
    datalist,
    el("div", { class: "field" }, el("label", { for: "prompt", text: "Prompt" }), prompt),
    el("div", { class: "field" }, el("label", { for: "agent", text: "Agent" }), agent),
    el("details", {}, el("summary", { text: "Image, limits, branch, name" }), imageField, cpuField, memoryField, baseField, nameField),
    error,
    bar,
    progressText,
    el("div", { class: "buttons" }, createButton, cancelButton),
  );

  const value = (node) => node.value.trim() || null;
  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
  };

  cancelButton.addEventListener("click", async () => {
    if (!requestId) {
      location.hash = "#/";
      return;
    }
    progressText.textContent = "Cancelling…";
    try {
      await call("POST", "/api/sessions/cancel", { request_id: requestId });
    } catch {
      /* the stream's end says what happened */
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!repo.value.trim()) return fail("Give the repository's path.");
    if (!prompt.value.trim()) return fail("Write a prompt.");
    requestId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
    const body = {
      repo: repo.value.trim(),
      prompt: prompt.value,
      agent: agent.value,
      image: value(image),
      cpu_limit: value(cpu),
      memory_limit: value(memory),
      base_branch: value(base),
      name: value(name),
      request_id: requestId,
    };
    for (const node of form.querySelectorAll("input, textarea, select")) node.disabled = true;
    createButton.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value");
    progressText.textContent = "Creating…";
    try {
      const session = await lines("POST", "/api/sessions?stream=true", body, (line) => {
        if (line.type !== "progress") return;
        progressText.textContent = line.message;
        if (line.total) {
          bar.max = line.total;
          bar.value = line.current || 0;
        } else bar.removeAttribute("value");
      });
      if (!session) throw new ApiError(500, "internal", "the daemon ended the stream without a result");
      await refetch(session.name).catch(() => {});
      if (form.isConnected) location.hash = `#/s/${encodeURIComponent(session.name)}`;
    } catch (problem) {
      fail(problem.code === "cancelled" ? "Cancelled; nothing was left behind." : `Not created: ${problem.message}`);
      progressText.textContent = "";
      bar.hidden = true;
      for (const node of form.querySelectorAll("input, textarea, select")) node.disabled = false;
      createButton.disabled = false;
    } finally {
      requestId = null;
    }
  });

  clear(main).append(form);
  prompt.focus();
  // Leaving the form lets a creation go on (the list shows it); Cancel stops it.
  return () => {};
}
