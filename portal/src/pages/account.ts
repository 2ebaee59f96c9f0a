// Account: tier and status; ask for a tier upgrade (an administrator decides).
import { errorText, field, formatDate, h } from "../dom.js";
import { api } from "../session.js";
import { TIERS } from "../tiers.js";

export async function renderAccount(main: HTMLElement): Promise<void> {
  const account = await api((c) => c.getAccount());
  const facts = h("table", {}, h("tbody", {}, ...Object.entries({
    Email: account.email, Tier: account.tier, Status: account.status, Administrator: account.is_admin ? "yes" : "no",
    Scopes: account.scopes.join(", "), Created: formatDate(account.created_at), "Last sign-in": formatDate(account.last_login_at),
  }).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { id: `acct-${k.toLowerCase().replace(/\W/g, "")}` }, v)))));
  const pending = account.pending_upgrade;
  const result = h("p", { role: "status", id: "upgrade-result" });
  const tier = h("select", { id: "upgrade-tier" }, ...TIERS.filter((t) => t !== account.tier).map((t) => h("option", { value: t }, t)));
  const reason = h("textarea", { id: "upgrade-reason", maxlength: 1000 });
  const form = h("form", {}, h("h2", {}, "Request an upgrade"), field("Tier", tier), field("Reason", reason),
    h("button", { type: "submit", id: "upgrade-submit" }, "Request upgrade"), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const request = await api((c) => c.requestAccountUpgrade({ tier: tier.value, reason: reason.value || undefined }));
      result.className = "ok";
      result.textContent = `Requested ${request.to_tier} (${request.status}); an administrator will decide.`;
    } catch (e) {
      result.className = "error";
      result.textContent = errorText(e);
    }
  });
  main.replaceChildren(h("h1", {}, "Account"), facts,
    pending ? h("p", { class: "panel", id: "upgrade-pending" },
      `Upgrade to ${pending.to_tier} requested ${formatDate(pending.created_at)}: ${pending.status}.`) : form);
}
