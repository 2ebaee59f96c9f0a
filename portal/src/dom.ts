// Small DOM helpers: element builder, status line, confirmation dialog, errors as text.
import { ApiError } from "bitnet-client";

type Attrs = Record<string, string | number | boolean | EventListener | undefined>;
type Child = Node | string | null | undefined | false;

/** Build an element: `h("button", { onclick: f, class: "x" }, "Text")`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Attrs = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

/** A labelled form field: the label points at the control by id. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const wrap = h("div", {}, h("label", { for: control.id }, label), control);
  if (hint) wrap.append(h("div", { class: "muted" }, hint));
  return wrap;
}

/** Announce a short message in the polite live region at the bottom. */
export function announce(text: string): void {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

/** A human message for any failure (problem details when the API sent them). */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const fields = (error.errors ?? []).map((e) => `${e.field ?? ""}: ${e.message}`).join("; ");
    return [error.title, error.detail, fields].filter(Boolean).join(" — ") || `HTTP ${error.status}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Ask before something that cannot be undone; resolves true on confirm. Keyboard: Esc cancels. */
export function confirmDialog(message: string, action: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-text" });
    const done = (ok: boolean) => { dialog.close(); dialog.remove(); resolve(ok); };
    dialog.append(
      h("p", { id: "confirm-text" }, message),
      h("button", { class: "danger", id: "confirm-yes", onclick: () => done(true) }, action),
      h("button", { class: "secondary", id: "confirm-no", onclick: () => done(false) }, "Cancel"),
    );
    dialog.addEventListener("cancel", () => done(false));
    document.body.append(dialog);
    dialog.showModal();
    (dialog.querySelector("#confirm-no") as HTMLElement).focus();
  });
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function formatDate(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "—";
}
