// Actions: each one asks for confirmation in a modal <dialog>, calls the
// API, and reports its outcome (the view itself updates from the events the
// change publishes). With a read-only token the buttons are disabled; the
// server would refuse anyway (403 read_only).

import { access, ApiError, onAccess } from "./api.js";
import { h } from "./dom.js";

/** Asks `question`; resolves true when confirmed. */
export function confirmDialog(question, confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    const dlg = h(
      "dialog",
      { class: "confirm" },
      h("p", {}, question),
      h(
        "form",
        { method: "dialog" },
        h("button", { value: "cancel", class: "secondary" }, "Cancel"),
        h("button", { value: "ok", class: "primary", autofocus: true }, confirmLabel),
      ),
    );
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "ok");
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Shows a short message at the bottom of the page. */
export function toast(text, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, role: "status" }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 3000);
}

/**
 * A button that, once confirmed with `question`, runs `act()`; disabled
 * while the token is read-only.
 */
export function actionButton(label, question, act, { cls = "", confirmLabel } = {}) {
  const b = h("button", { class: `action ${cls}`, dataset: { action: label } }, label);
  const sync = () => {
    const ro = access === "read-only";
    b.disabled = ro;
    b.title = ro ? "the read-only token cannot change anything" : "";
  };
  sync();
  onAccess(sync);
  b.addEventListener("click", async () => {
    if (!(await confirmDialog(question, confirmLabel ?? label))) return;
    b.disabled = true;
    try {
      await act();
      toast(`${label}: done`);
    } catch (e) {
      toast(e instanceof ApiError ? `${label} refused: ${e.message}` : `${label} failed: ${e}`, "error");
    } finally {
      sync();
    }
  });
  return b;
}
