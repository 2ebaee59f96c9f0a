// Quantize a float model: start an asynchronous job, follow its progress, cancel it.
// Progress is polled through the SDK (GET /v1/quantize/{id}); the WebSocket `subscribe`
// would push it instead.
import type { Job, Model, QuantType } from "bitnet-client";
import { errorText, field, h } from "../dom.js";
import { api } from "../session.js";

const FLOAT = new Set(["f32", "f16", "bf16"]);
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export function canQuantize(m: Model): boolean {
  return m.status === "ready" && FLOAT.has(m.qtype ?? "");
}

export function quantizeForm(m: Model, onFinished: () => Promise<void>): HTMLElement {
  const qtype = h("select", { id: "q-type" }, ...["tq2_0", "tq1_0", "i2_s"].map((q) => h("option", { value: q }, q)));
  const bar = h("progress", { id: "q-progress", max: 100, value: 0, "aria-label": "Quantization progress" });
  const state = h("span", { id: "q-state", role: "status" });
  const error = h("p", { class: "error", role: "alert", id: "q-error" });
  const cancel = h("button", { type: "button", class: "danger", id: "q-cancel", disabled: true }, "Cancel");
  const start = h("button", { type: "submit", id: "q-start" }, "Quantize");
  let job: Job | null = null;
  cancel.addEventListener("click", async () => {
    if (!job) return;
    try {
      job = await api((c) => c.cancelQuantizeJob(job!.id));
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  const form = h("form", {}, h("h3", {}, "Quantize"), field("Target type", qtype), start, cancel,
    h("div", {}, bar, " ", state), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    start.disabled = true;
    try {
      job = await api((c) => c.quantizeModel({ model_id: m.id, qtype: qtype.value as QuantType, mode: "async" }));
      cancel.disabled = false;
      while (job && !FINAL.has(job.status)) {
        bar.value = Math.round(job.progress * 100);
        state.textContent = `${job.status} ${bar.value}%${job.message ? ` — ${job.message}` : ""}`;
        await new Promise((resolve) => setTimeout(resolve, 300));
        job = await api((c) => c.getQuantizeJob(job!.id));
      }
      if (job) {
        bar.value = Math.round(job.progress * 100);
        state.textContent = `${job.status}${job.error ? `: ${job.error.title}` : ""}`;
      }
      await onFinished();
    } catch (e) {
      error.textContent = errorText(e);
    } finally {
      start.disabled = false;
      cancel.disabled = true;
    }
  });
  return form;
}
