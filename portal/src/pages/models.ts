// Models: filtered pages, upload (./upload.ts: resumable, with a progress bar), details with
// GGUF metadata and validation problems, delete.
import type { Model, ModelStatus } from "bitnet-client";
import { announce, confirmDialog, errorText, field, formatBytes, formatDate, h } from "../dom.js";
import { api } from "../session.js";
import { canQuantize, quantizeForm } from "./quantize.js";
import { uploadForm } from "./upload.js";

const PAGE = 10;

export async function renderModels(main: HTMLElement): Promise<void> {
  const list = h("div", { class: "table-wrap", id: "models-list" });
  const details = h("div", { id: "model-details" });
  const prefix = h("input", { type: "text", id: "models-prefix" });
  const status = h("select", { id: "models-status" }, h("option", { value: "" }, "any"),
    ...["ready", "pending_upload", "invalid"].map((s) => h("option", { value: s }, s)));
  const cursors: (string | undefined)[] = [undefined];
  const load = async () => {
    const page = await api((c) => c.listModels({
      limit: PAGE, cursor: cursors[cursors.length - 1], namePrefix: prefix.value || undefined,
      status: (status.value || undefined) as ModelStatus | undefined,
    }));
    renderList(list, page.data, details, load);
    const nav = h("div", {},
      h("button", { type: "button", class: "secondary", id: "models-prev", disabled: cursors.length < 2,
        onclick: async () => { cursors.pop(); await load(); } }, "Previous"),
      h("button", { type: "button", class: "secondary", id: "models-next", disabled: !page.next_cursor,
        onclick: async () => { cursors.push(page.next_cursor!); await load(); } }, "Next"));
    list.append(nav);
  };
  const filters = h("form", { role: "search" }, field("Name starts with", prefix), field("Status", status),
    h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", async (e) => { e.preventDefault(); cursors.splice(1); await load(); });
  main.replaceChildren(h("h1", {}, "Models"), uploadForm(load), h("h2", {}, "Your models and public ones"),
    filters, list, details);
  await load();
}

function renderList(list: HTMLElement, models: Model[], details: HTMLElement, reload: () => Promise<void>): void {
  if (!models.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No models match."));
    return;
  }
  const rows = models.map((m) => h("tr", { "data-model-id": m.id },
    h("td", {}, m.name), h("td", {}, m.status), h("td", {}, m.qtype ?? "—"), h("td", {}, formatBytes(m.size_bytes)),
    h("td", {}, m.public ? "public" : "private"), h("td", {}, formatDate(m.created_at)),
    h("td", {},
      h("button", { type: "button", class: "secondary", "aria-label": `Details of ${m.name}`,
        onclick: () => showDetails(details, m, reload) }, "Details"),
      m.owner_id ? h("button", { type: "button", class: "danger", "aria-label": `Delete ${m.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete the model "${m.name}" and its file?`, "Delete"))) return;
        try {
          await api((c) => c.deleteModel(m.id));
          announce(`Deleted ${m.name}.`);
        } catch (e) {
          announce(errorText(e));
        }
        await reload();
      } }, "Delete") : null)));
  list.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ...["Name", "Status", "Type", "Size", "Visibility", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows)));
}

async function showDetails(details: HTMLElement, m: Model, reload: () => Promise<void>): Promise<void> {
  const facts = h("table", {}, h("tbody", {}, ...Object.entries({
    ID: m.id, Name: m.name, Description: m.description ?? "—", Kind: m.kind ?? "—", Format: m.format ?? "—",
    Status: m.status, SHA256: m.sha256 ?? "—", Tags: m.tags.join(", ") || "—",
  }).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "mono" }, String(v))))));
  const extra = h("div", {});
  details.replaceChildren(h("div", { class: "panel", id: "details-panel" }, h("h2", {}, `Model ${m.name}`), facts,
    canQuantize(m) ? quantizeForm(m, reload) : null, extra));
  try {
    if (m.status === "ready") {
      const meta = await api((c) => c.getModelMetadata(m.id));
      extra.append(h("h3", {}, "Metadata"), h("pre", { tabindex: "0" }, JSON.stringify(meta, null, 2)));
    } else if (m.status === "invalid") {
      const report = await api((c) => c.getModelValidation(m.id));
      extra.append(h("h3", {}, "Validation problems"), h("pre", { tabindex: "0" }, JSON.stringify(report, null, 2)));
    }
  } catch (e) {
    extra.append(h("p", { class: "error" }, errorText(e)));
  }
  details.scrollIntoView();
}
