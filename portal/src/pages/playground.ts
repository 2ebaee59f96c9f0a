// Playground: pick a model, set sampling, stream tokens over SSE, stop; TTFT, tokens/s, snippets.
import type { InferenceRequest, Model } from "bitnet-client";
import { announce, errorText, field, h } from "../dom.js";
import { api } from "../session.js";
import { LANGUAGES, snippet, type Language } from "../snippets.js";

export async function renderPlayground(main: HTMLElement): Promise<void> {
  const models: Model[] = [];
  await api(async (c) => {
    for await (const m of c.listModelsAll({ status: "ready", kind: "llm" })) models.push(m);
  });
  const model = h("select", { id: "pg-model" },
    ...models.map((m) => h("option", { value: m.id }, `${m.name} (${m.id})`)));
  const prompt = h("textarea", { id: "pg-prompt" });
  prompt.value = "The capital of France is";
  const num = (id: string, value: string, attrs: Record<string, string> = {}) =>
    h("input", { type: "number", id, value, ...attrs });
  const maxTokens = num("pg-max-tokens", "64", { min: "1", max: "131072" });
  const temperature = num("pg-temperature", "0.8", { min: "0", max: "2", step: "0.05" });
  const topP = num("pg-top-p", "0.95", { min: "0", max: "1", step: "0.01" });
  const topK = num("pg-top-k", "40", { min: "0", step: "1" });
  const seed = num("pg-seed", "", { min: "0", step: "1" });
  const output = h("div", { class: "panel output mono", id: "pg-output", "aria-live": "off" });
  // Not a live region: it changes with every token; the end of a run is announced once.
  const stats = h("div", { class: "stats", id: "pg-stats" });
  const error = h("p", { class: "error", role: "alert", id: "pg-error" });
  const run = h("button", { type: "submit", id: "pg-run" }, "Generate");
  const stop = h("button", { type: "button", class: "danger", id: "pg-stop", disabled: true }, "Stop");
  const code = h("pre", { id: "pg-snippet", tabindex: "0" });
  let lang: Language = "curl";
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Snippet language" });

  const request = (): InferenceRequest => {
    const body: InferenceRequest = {
      model: model.value, prompt: prompt.value, max_tokens: Number(maxTokens.value),
      temperature: Number(temperature.value), top_p: Number(topP.value), top_k: Number(topK.value),
    };
    if (seed.value !== "") body.seed = Number(seed.value);
    return body;
  };
  const showSnippet = () => {
    code.textContent = snippet(lang, location.origin, request());
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.textContent === lang));
  };
  for (const l of LANGUAGES) {
    tabs.append(h("button", { type: "button", role: "tab", class: "secondary", onclick: () => { lang = l; showSnippet(); } }, l));
  }

  let controller: AbortController | null = null;
  stop.addEventListener("click", () => controller?.abort());
  const form = h("form", {}, field("Model", model), field("Prompt", prompt), field("Max tokens", maxTokens),
    field("Temperature", temperature), field("Top p", topP), field("Top k", topK),
    field("Seed (optional)", seed), run, stop, error);
  form.addEventListener("input", showSnippet);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    output.textContent = "";
    controller = new AbortController();
    run.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let first = 0;
    let tokens = 0;
    const [stateEl, countEl, ttftEl, rateEl] = ["pg-state", "pg-count", "pg-ttft", "pg-rate"].map((id) => h("span", { id }));
    stats.replaceChildren(stateEl, countEl, ttftEl, rateEl);
    const show = (state: string) => {
      const now = performance.now();
      const rate = tokens > 1 && first ? ((tokens - 1) * 1000) / (now - first) : 0;
      stateEl.textContent = state;
      countEl.textContent = `tokens: ${tokens}`;
      ttftEl.textContent = `time to first token: ${first ? Math.round(first - started) + " ms" : "—"}`;
      rateEl.textContent = `tokens/s: ${rate ? rate.toFixed(1) : "—"}`;
    };
    show("waiting for the first token");
    try {
      await api(async (c) => {
        for await (const e of c.streamInference(request(), { signal: controller!.signal })) {
          if (e.event === "token") {
            if (!first) first = performance.now();
            tokens++;
            output.append(e.data.text);
            show("streaming");
          } else {
            show(`done (${e.data.finish_reason})`);
            announce(`Generation done: ${tokens} tokens.`);
          }
        }
      });
    } catch (e) {
      if (controller.signal.aborted) {
        show("stopped");
        announce(`Generation stopped after ${tokens} tokens.`);
      }
      else error.textContent = errorText(e);
    } finally {
      run.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
  main.replaceChildren(h("h1", {}, "Playground"),
    models.length ? form : h("p", { class: "muted" }, "No ready language model yet: upload one on the Models page."),
    h("h2", {}, "Output"), stats, output, h("h2", {}, "The same request in code"), tabs, code);
  showSnippet();
}
