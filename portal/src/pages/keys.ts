// API keys: list, create with chosen scopes (the full key shown once), revoke with confirmation.
import type { ApiKey, Scope } from "bitnet-client";
import { announce, confirmDialog, errorText, field, formatDate, h } from "../dom.js";
import { api, session } from "../session.js";

export async function renderKeys(main: HTMLElement): Promise<void> {
  const list = h("div", { class: "table-wrap", id: "keys-list" });
  const created = h("div", { id: "key-created" });
  main.replaceChildren(h("h1", {}, "API keys"), createForm(created, () => refresh(list)), created,
    h("h2", {}, "Your keys"), list);
  await refresh(list);
}

function createForm(created: HTMLElement, after: () => Promise<void>): HTMLFormElement {
  const name = h("input", { type: "text", id: "key-name", required: true, maxlength: 100 });
  const scopes = session()!.user.scopes.filter((s) => s !== "admin");
  const boxes = scopes.map((scope) =>
    h("label", {}, h("input", { type: "checkbox", name: "scope", value: scope, checked: true }), scope));
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", {}, h("h2", {}, "Create a key"), field("Name", name),
    h("fieldset", {}, h("legend", {}, "Scopes"), ...boxes),
    h("button", { type: "submit", id: "key-create" }, "Create key"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const chosen = [...form.querySelectorAll<HTMLInputElement>("input[name=scope]:checked")]
      .map((box) => box.value as Scope);
    try {
      const key = await api((c) => c.createApiKey({ name: name.value, scopes: chosen }));
      showOnce(created, key.key);
      name.value = "";
      await after();
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  return form;
}

function showOnce(created: HTMLElement, key: string): void {
  const value = h("input", { type: "text", id: "new-key", readonly: true, value: key, class: "mono" });
  const copied = h("span", { role: "status", class: "ok" });
  created.replaceChildren(h("div", { class: "panel" },
    h("p", {}, h("strong", {}, "Copy this key now: it will not be shown again.")),
    field("New API key", value),
    h("button", { type: "button", id: "copy-key", onclick: async () => {
      value.select();
      try {
        await navigator.clipboard.writeText(key);
      } catch {
        document.execCommand("copy");
      }
      copied.textContent = "Copied.";
    } }, "Copy"), copied));
  value.focus();
  value.select();
}

async function refresh(list: HTMLElement): Promise<void> {
  const keys: ApiKey[] = [];
  await api(async (c) => {
    for await (const key of c.listApiKeysAll()) keys.push(key);
  });
  if (!keys.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No keys yet."));
    return;
  }
  const rows = keys.map((key) => h("tr", { "data-key-id": key.id },
    h("td", {}, key.name), h("td", { class: "mono" }, `${key.prefix}…`),
    h("td", {}, key.scopes.join(", ")), h("td", {}, formatDate(key.created_at)),
    h("td", {}, formatDate(key.last_used_at)),
    h("td", {}, h("button", { class: "danger", "aria-label": `Revoke ${key.name}`, onclick: async () => {
      if (!(await confirmDialog(`Revoke the key "${key.name}"? Programs using it stop working at once.`, "Revoke"))) return;
      try {
        await api((c) => c.revokeApiKey(key.id));
        announce(`Revoked ${key.name}.`);
      } catch (e) {
        announce(errorText(e));
      }
      await refresh(list);
    } }, "Revoke"))));
  list.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ...["Name", "Prefix", "Scopes", "Created", "Last used", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows)));
}
