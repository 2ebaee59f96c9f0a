// Admin: every account, filtered and paged; change a tier, disable or enable an account.
// Administrators only: the shell does not route others here, and the API refuses them (403).
import type { Account, AccountStatus, AccountUpdate } from "bitnet-client";
import { announce, confirmDialog, errorText, field, formatDate, h } from "../dom.js";
import { pager } from "../pager.js";
import { api, session } from "../session.js";
import { TIERS } from "../tiers.js";

export async function renderUsers(main: HTMLElement): Promise<void> {
  const email = h("input", { type: "text", id: "users-email", maxlength: 320, autocomplete: "off" });
  const tier = h("select", { id: "users-tier" }, h("option", { value: "" }, "any"),
    ...TIERS.map((t) => h("option", { value: t }, t)));
  const status = h("select", { id: "users-status" }, h("option", { value: "" }, "any"),
    h("option", { value: "active" }, "active"), h("option", { value: "disabled" }, "disabled"));
  const list = h("div", { id: "users-list" });
  const error = h("p", { class: "error", role: "alert", id: "users-error" });
  const pages = pager("Accounts", () => load());
  const load = async (): Promise<void> => {
    error.textContent = "";
    try {
      const page = await api((c) => c.listUsers({ cursor: pages.cursor(), limit: 20,
        emailContains: email.value.trim() || undefined, tier: tier.value || undefined,
        status: (status.value || undefined) as AccountStatus | undefined }));
      list.replaceChildren(table(page.data, load), pages.controls(page.next_cursor));
    } catch (e) {
      error.textContent = errorText(e);
    }
  };
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter accounts" },
    field("Email contains", email), field("Tier", tier), field("Status", status),
    h("button", { type: "submit", id: "users-filter" }, "Filter"));
  filters.addEventListener("submit", async (event) => {
    event.preventDefault();
    pages.reset();
    await load();
  });
  main.replaceChildren(h("h1", {}, "Users"), filters, error, list);
  await load();
}

function table(users: Account[], reload: () => Promise<void>): HTMLElement {
  if (!users.length) return h("p", { class: "muted" }, "No accounts match.");
  const me = session()!.user.id;
  const rows = users.map((u) => {
    const tier = h("select", { id: `tier-${u.id}`, "aria-label": `Tier of ${u.email}` },
      ...[...new Set([u.tier, ...TIERS])].map((t) => h("option", { value: t, selected: t === u.tier }, t)));
    const update = async (change: AccountUpdate, done: string): Promise<void> => {
      try {
        await api((c) => c.updateUser(u.id, change));
        announce(done);
      } catch (e) {
        announce(errorText(e));
      }
      await reload();
    };
    const setTier = h("button", { type: "button", class: "secondary", "aria-label": `Set the tier of ${u.email}`,
      onclick: () => update({ tier: tier.value }, `${u.email} is now on tier ${tier.value}.`) }, "Set tier");
    const disabled = u.status === "disabled";
    const toggle = u.id === me ? null : h("button", { type: "button", class: disabled ? "secondary" : "danger",
      "aria-label": `${disabled ? "Enable" : "Disable"} ${u.email}`, onclick: async () => {
        if (!disabled && !(await confirmDialog(`Disable ${u.email}? Their tokens and API keys stop working at once.`, "Disable"))) return;
        await update({ status: disabled ? "active" : "disabled" }, `${u.email} is ${disabled ? "enabled" : "disabled"}.`);
      } }, disabled ? "Enable" : "Disable");
    const pending = u.pending_upgrade ? `${u.pending_upgrade.to_tier} requested` : "—";
    return h("tr", { "data-user-id": u.id }, h("td", {}, u.email, u.is_admin ? " (admin)" : ""),
      h("td", { class: "user-tier" }, u.tier), h("td", {}, tier, setTier), h("td", {}, u.status),
      h("td", {}, pending), h("td", {}, formatDate(u.created_at)), h("td", {}, toggle));
  });
  return h("div", { class: "table-wrap" }, h("table", { id: "users-table" },
    h("thead", {}, h("tr", {}, ...["Email", "Tier", "Change tier", "Status", "Upgrade", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows)));
}
