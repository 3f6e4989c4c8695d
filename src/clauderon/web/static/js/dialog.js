// One modal dialog at a time (<dialog>: focus stays inside, Escape closes it).

import { clear, el } from "./dom.js";

const dialog = document.getElementById("dialog");

// Shows `body` with buttons; resolves with the chosen button's value (null on Escape).
export function ask(title, body, buttons) {
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.oncancel = dialog.onclose = null;
      dialog.close();
      resolve(value);
    };
    clear(dialog).append(
      el("h2", { id: "dialog-title", text: title }),
      el("div", { class: "dialog-body" }, body),
      el(
        "div",
        { class: "buttons" },
        ...buttons.map((b) =>
          el("button", { type: "button", class: b.class || "", "data-value": b.value, onclick: () => done(b.value), text: b.label }),
        ),
      ),
    );
    // Escape. (Not `close`: that event comes late, also for a dialog closed just before.)
    dialog.oncancel = (event) => {
      event.preventDefault();
      done(null);
    };
    if (!dialog.open) dialog.showModal();
    // Closed some other way; a late event for an earlier close finds the dialog open.
    dialog.onclose = () => !dialog.open && done(null);
    const preferred = dialog.querySelector("button.default") || dialog.querySelector("button");
    if (preferred) preferred.focus();
  });
}

export function busy(title, text) {
  dialog.oncancel = (event) => event.preventDefault(); // it ends by itself
  dialog.onclose = null;
  clear(dialog).append(el("h2", { id: "dialog-title", text: title }), el("p", { class: "progress-text", role: "status", text }));
  if (!dialog.open) dialog.showModal();
  return (more) => {
    const node = dialog.querySelector(".progress-text");
    if (node) node.textContent = more;
  };
}

export function close() {
  if (dialog.open) dialog.close();
}
