// The models page's upload form: JSON `POST /v1/models` creates the record, then the file goes
// in resumable `Content-Range` pieces (`uploadModelResumable`). Pause stops it; choosing the
// same file again (also after a reload or a broken connection) offers Resume, which continues
// from the offset the server holds instead of from zero.
import { ApiError } from "bitnet-client";
import { announce, errorText, field, formatBytes, h } from "../dom.js";
import { api, makeClient, session, storedTokens } from "../session.js";
import { forget, matching, pieceSize, remember, unfinishedUploads, type Unfinished } from "../unfinished.js";
import { progressFetch } from "../xhrfetch.js";

/** Answers after which resuming cannot help: the model is gone, too large, or its file is invalid. */
const FINAL_STATUSES = [403, 404, 413, 422];

export function uploadForm(after: () => Promise<void>): HTMLElement {
  const name = h("input", { type: "text", id: "upload-name", required: true, maxlength: 128 });
  const description = h("input", { type: "text", id: "upload-description" });
  const file = h("input", { type: "file", id: "upload-file", required: true, accept: ".gguf,.bin,.safetensors" });
  const bar = h("progress", { id: "upload-progress", max: 100, value: 0, "aria-label": "Upload progress" });
  const text = h("span", { id: "upload-percent" }); // milestones are announced, not every piece
  const error = h("p", { class: "error", role: "alert", id: "upload-error" });
  const send = h("button", { type: "submit", id: "upload-submit" }, "Upload");
  const pause = h("button", { type: "button", class: "secondary", id: "upload-pause" }, "Pause");
  const offer = h("div", { class: "panel", id: "upload-offer" });
  const unfinished = h("div", { id: "upload-unfinished" });
  pause.hidden = offer.hidden = true;
  let running: AbortController | null = null;
  const user = () => session()?.user.id ?? "";

  const busy = (on: boolean) => {
    send.disabled = file.disabled = on;
    pause.hidden = !on;
    if (on) offer.hidden = true;
  };
  const show = (sent: number, total: number) => {
    const pct = total ? Math.floor((100 * sent) / total) : 0;
    bar.value = pct;
    text.textContent = `${pct}% (${formatBytes(sent)} of ${formatBytes(total)})`;
  };

  const run = async (modelId: string, modelName: string, chosen: File) => {
    remember(user(), modelId, modelName, chosen);
    const controller = new AbortController();
    running = controller;
    busy(true);
    error.textContent = "";
    text.textContent = "Starting…";
    let held = 0;
    let milestone = 0;
    const progress = (sent: number) => {
      show(sent, chosen.size);
      const quarter = Math.floor((4 * sent) / chosen.size);
      if (quarter > milestone && quarter < 4) announce(`Upload ${25 * (milestone = quarter)}% done.`);
    };
    try {
      // A fresh client per attempt: it sends the current tokens, and XMLHttpRequest reports
      // the bytes of the piece in flight between the pieces the server confirms.
      const status = await api(() => makeClient(storedTokens(), { fetch: progressFetch((loaded) => progress(held + loaded)) })
        .uploadModelResumable(modelId, chosen, {
          pieceSize: pieceSize(), signal: controller.signal,
          onProgress: (sent) => { held = sent; progress(sent); },
        }, { timeoutMs: 600_000 }));
      forget(modelId);
      bar.value = 100;
      text.textContent = `Uploaded: ${status.model?.name ?? modelName} is ${status.model?.status ?? "ready"}.`;
      announce(`Uploaded ${modelName}.`);
      await after();
    } catch (e) {
      if (controller.signal.aborted) {
        text.textContent = `Paused at ${formatBytes(held)} of ${formatBytes(chosen.size)}.`;
        announce("Upload paused.");
      } else {
        if (e instanceof ApiError && FINAL_STATUSES.includes(e.status)) forget(modelId);
        error.textContent = errorText(e);
      }
    } finally {
      running = null;
      busy(false);
      listUnfinished();
    }
    await offerResume(controller.signal.aborted);
  };

  // Offer to resume when the chosen file is one whose upload did not finish.
  const offerResume = async (focus = false) => {
    const chosen = file.files?.[0];
    const entry = chosen ? matching(user(), chosen) : undefined;
    offer.hidden = !entry || !chosen;
    if (!entry || !chosen) return;
    const resume = h("button", { type: "button", id: "upload-resume",
      onclick: () => run(entry.modelId, entry.modelName, chosen) }, "Resume");
    const held = h("span", { id: "upload-held" });
    offer.replaceChildren(h("p", {}, `The upload of ${entry.fileName} to the model "${entry.modelName}" stopped before `
      + "the end. Resume continues from what the server holds. ", held), resume);
    if (focus) resume.focus();
    try {
      const state = await api((c) => c.getModelUpload(entry.modelId));
      held.textContent = state.total_bytes === chosen.size
        ? `It holds ${formatBytes(state.offset)} of ${formatBytes(chosen.size)}.` : "It holds none of it yet.";
    } catch (e) {
      if (e instanceof ApiError && FINAL_STATUSES.includes(e.status)) {
        forget(entry.modelId);
        offer.hidden = true;
        listUnfinished();
      } else {
        held.textContent = errorText(e);
      }
    }
  };

  const listUnfinished = () => {
    const entries = unfinishedUploads(user());
    unfinished.replaceChildren(...(entries.length ? [h("h3", {}, "Unfinished uploads"),
      h("p", { class: "muted" }, "Choose the same file again above to resume one."),
      h("ul", {}, ...entries.map((u) => unfinishedItem(u, () => { forget(u.modelId); listUnfinished(); void offerResume(); })))]
      : []));
  };

  pause.addEventListener("click", () => running?.abort());
  file.addEventListener("change", () => { error.textContent = ""; void offerResume(); });
  const form = h("form", {}, h("h2", {}, "Upload a model"), field("Name", name),
    field("Description", description), field("File (GGUF)", file), send, " ", pause,
    h("div", {}, bar, " ", text), error, offer, unfinished);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen || running) return;
    error.textContent = "";
    try {
      const record = await api((c) => c.createModel({ name: name.value, description: description.value || undefined }));
      void after(); // the list shows the new model, pending its upload
      await run(record.id, record.name, chosen);
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  listUnfinished();
  return form;
}

function unfinishedItem(u: Unfinished, onForget: () => void): HTMLElement {
  return h("li", { "data-upload-model": u.modelId }, `${u.modelName}: ${u.fileName} (${formatBytes(u.size)}) `,
    h("button", { type: "button", class: "secondary", "aria-label": `Forget the upload of ${u.fileName} to ${u.modelName}`,
      onclick: onForget }, "Forget"));
}
