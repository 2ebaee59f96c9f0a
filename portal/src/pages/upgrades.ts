// Admin: tier upgrade requests (pending first by default); approve or reject each.
import type { UpgradeRequest, UpgradeStatus } from "bitnet-client";
import { announce, confirmDialog, errorText, field, formatDate, h } from "../dom.js";
import { pager } from "../pager.js";
import { api } from "../session.js";

export async function renderUpgrades(main: HTMLElement): Promise<void> {
  const status = h("select", { id: "upgrades-status" }, ...["pending", "approved", "rejected", ""].map((s) =>
    h("option", { value: s }, s || "any")));
  const list = h("div", { id: "upgrades-list" });
  const error = h("p", { class: "error", role: "alert", id: "upgrades-error" });
  const pages = pager("Upgrade requests", () => load());
  const load = async (): Promise<void> => {
    error.textContent = "";
    try {
      const page = await api((c) => c.listUpgradeRequests({ cursor: pages.cursor(), limit: 20,
        status: (status.value || undefined) as UpgradeStatus | undefined }));
      list.replaceChildren(table(page.data, load), pages.controls(page.next_cursor));
    } catch (e) {
      error.textContent = errorText(e);
    }
  };
  status.addEventListener("change", async () => {
    pages.reset();
    await load();
  });
  main.replaceChildren(h("h1", {}, "Upgrade requests"),
    h("form", { class: "filters", "aria-label": "Filter upgrade requests", onsubmit: (e: Event) => e.preventDefault() },
      field("Status", status)), error, list);
  await load();
}

function table(requests: UpgradeRequest[], reload: () => Promise<void>): HTMLElement {
  if (!requests.length) return h("p", { class: "muted", id: "upgrades-none" }, "No upgrade requests.");
  const rows = requests.map((r) => {
    const decide = async (approve: boolean): Promise<void> => {
      if (!approve && !(await confirmDialog(`Reject ${r.email}'s request for ${r.to_tier}?`, "Reject"))) return;
      try {
        const done = await api((c) => approve ? c.approveUpgradeRequest(r.id) : c.rejectUpgradeRequest(r.id));
        announce(`${r.email}: ${r.to_tier} ${done.status}.`);
      } catch (e) {
        announce(errorText(e));
      }
      await reload();
    };
    const actions = r.status === "pending" ? [
      h("button", { type: "button", class: "approve", "aria-label": `Approve ${r.email}: ${r.to_tier}`, onclick: () => decide(true) }, "Approve"),
      h("button", { type: "button", class: "danger", "aria-label": `Reject ${r.email}: ${r.to_tier}`, onclick: () => decide(false) }, "Reject"),
    ] : [formatDate(r.decided_at)];
    return h("tr", { "data-request-id": r.id }, h("td", {}, r.email), h("td", {}, `${r.from_tier} → ${r.to_tier}`),
      h("td", {}, r.reason || "—"), h("td", {}, formatDate(r.created_at)), h("td", { class: "upgrade-status" }, r.status),
      h("td", {}, ...actions));
  });
  return h("div", { class: "table-wrap" }, h("table", { id: "upgrades-table" },
    h("thead", {}, h("tr", {}, ...["Account", "Tier", "Reason", "Requested", "Status", "Decision"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows)));
}
