// The official Node `openai` package against a live server, given only baseURL and apiKey.
// argv: base URL, API key, model name. Prints one JSON line.
import OpenAI from "openai";

const [url, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: url + "/openai/v1", apiKey, maxRetries: 0 });
const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
const messages = [{ role: "user", content: "What is the capital of France?" }];
const optional = { store: false, metadata: { app: "node" }, service_tier: "auto",
                   parallel_tool_calls: false, reasoning_effort: "low" };
const chat = await client.chat.completions.create({ model, messages, max_completion_tokens: 6,
                                                    temperature: 0, ...optional });
const stream = await client.chat.completions.create({ model, messages, max_completion_tokens: 6,
                                                      temperature: 0, stream: true, ...optional });
let streamed = "";
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
let overflow;
try {
  await client.completions.create({ model, prompt: "The quick brown fox ".repeat(200), max_tokens: 1 });
} catch (error) {
  if (!(error instanceof OpenAI.APIError)) throw error;
  overflow = { status: error.status, code: error.code, param: error.param };
}
console.log(JSON.stringify({
  ids, text: chat.choices[0].message.content, fingerprint: chat.system_fingerprint, streamed, overflow,
}));
