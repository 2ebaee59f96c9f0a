// Quantize a float model: start an asynchronous job, follow its progress live over the
// WebSocket `subscribe` (the server pushes the job at every change), cancel it.
import { ApiError, type InferenceSocket, type Job, type Model, type QuantType } from "bitnet-client";
import { errorText, field, h } from "../dom.js";
import { api, session } from "../session.js";

const FLOAT = new Set(["f32", "f16", "bf16"]);
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export function canQuantize(m: Model): boolean {
  return m.status === "ready" && FLOAT.has(m.qtype ?? "");
}

/** The session's socket; an expired access token is refreshed (by an HTTP call) and retried once. */
async function openSocket(): Promise<InferenceSocket> {
  try {
    return await session()!.client.connectInferenceSocket();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    await api((c) => c.getCurrentUser());
    return await session()!.client.connectInferenceSocket();
  }
}

/** Follow `job` until it is final, calling `show` with every version the server pushes. */
async function follow(job: Job, show: (job: Job) => void): Promise<Job> {
  const socket = await openSocket();
  try {
    socket.subscribe(job.id);
    while (!FINAL.has(job.status)) {
      const message = await socket.next();
      if (message.type === "error") throw ApiError.fromProblem(message.error);
      if (message.type === "progress" && (message.job as Job).id === job.id) {
        job = message.job as Job;
        show(job);
      }
    }
    return job;
  } finally {
    socket.close();
  }
}

export function quantizeForm(m: Model, onFinished: () => Promise<void>): HTMLElement {
  const qtype = h("select", { id: "q-type" }, ...["tq2_0", "tq1_0", "i2_s"].map((q) => h("option", { value: q }, q)));
  const bar = h("progress", { id: "q-progress", max: 100, value: 0, "aria-label": "Quantization progress" });
  const state = h("span", { id: "q-state", role: "status" });
  const error = h("p", { class: "error", role: "alert", id: "q-error" });
  const cancel = h("button", { type: "button", class: "danger", id: "q-cancel", disabled: true }, "Cancel");
  const start = h("button", { type: "submit", id: "q-start" }, "Quantize");
  let job: Job | null = null;
  const show = (j: Job) => {
    bar.value = Math.round(j.progress * 100);
    const detail = FINAL.has(j.status) ? (j.error ? `: ${j.error.title}` : "") : ` ${bar.value}%${j.message ? ` — ${j.message}` : ""}`;
    state.textContent = `${j.status}${detail}`;
  };
  cancel.addEventListener("click", async () => {
    if (!job) return;
    cancel.disabled = true;
    try {
      const asked = await api((c) => c.cancelQuantizeJob(job!.id));
      if (!FINAL.has(asked.status)) state.textContent = "cancelling…";
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
      show(job);
      cancel.disabled = FINAL.has(job.status);
      job = await follow(job, show);
      show(job);
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
