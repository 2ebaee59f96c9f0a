// Admin: server status (backends, loaded models, queue, workers) and devices. Administrators only:
// the shell does not route others here, and the API refuses them (403) anyway.
import { formatBytes, formatDate, h } from "../dom.js";
import { api } from "../session.js";

export async function renderAdmin(main: HTMLElement): Promise<void> {
  const [status, devices] = await Promise.all([api((c) => c.getStatus()), api((c) => c.getDevices())]);
  const loaded = status.loaded_models.map((m) => h("tr", {}, h("td", {}, m.name), h("td", {}, m.backend),
    h("td", {}, formatBytes(m.memory_bytes)), h("td", {}, String(m.running)), h("td", {}, String(m.queued)),
    h("td", {}, formatDate(m.last_used_at))));
  main.replaceChildren(h("h1", {}, "Admin"),
    h("h2", {}, "Server status"),
    h("p", { id: "admin-status" }, `Status ${status.status}, version ${status.version}, up ${Math.round(status.uptime_seconds)} s, ` +
      `backends: ${status.backends.join(", ")}; queue: ${status.queue.depth} waiting, ${status.queue.running} running.`),
    h("h2", {}, "Loaded models"),
    loaded.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "Backend", "Memory", "Running", "Queued", "Last used"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...loaded))) : h("p", { class: "muted" }, "None loaded."),
    h("h2", {}, "Backends and devices"),
    h("p", {}, `Chosen automatically: ${devices.auto ?? "none available"}.`),
    h("div", { class: "table-wrap" }, h("table", { id: "admin-backends" },
      h("thead", {}, h("tr", {}, ...["Backend", "Version", "Priority", "Available", "Devices"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...devices.backends.map((b) => h("tr", {}, h("td", {}, b.name), h("td", {}, b.version ?? "—"),
        h("td", {}, String(b.priority)), h("td", {}, b.available ? "yes" : `no${b.error ? `: ${b.error}` : ""}`),
        h("td", {}, b.devices.map((d) => `${d.name} (${d.kind}, ${formatBytes(d.memory_bytes)})`).join("; "))))))),
    h("h2", {}, "Users and upgrade approvals"),
    h("p", {}, h("a", { href: "#/users", id: "admin-users-link" }, "Users and their tiers"), " · ",
      h("a", { href: "#/upgrades", id: "admin-upgrades-link" }, "Upgrade requests")));
}
