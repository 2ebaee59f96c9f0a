// A tour of the generated TypeScript SDK against a running server, one JSON line per step.
//
//   bitnet sdk generate --lang typescript --out sdk && npm install && npm run build
//   BITNET_URL=http://127.0.0.1:8080 BITNET_EMAIL=... BITNET_PASSWORD=... \
//     BITNET_MODEL_FILE=model-f32.gguf npm start
//
// Optional: BITNET_LIMITED_TOKEN, the token of an account on a tier with a small hourly
// budget, to show the 429 error. The test suite runs this file (tests/generators/test_conformance.py).

import { createHash } from "node:crypto";
import { createReadStream, openAsBlob, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { Readable } from "node:stream";

import {
  BitNetClient,
  ConnectionError,
  NotFoundError,
  RateLimitError,
  type InferenceRequest,
  type StreamDoneEvent,
} from "bitnet-client";

function say(step: string, fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ step, ...fields }));
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

async function main(): Promise<void> {
  const baseUrl = env("BITNET_URL");
  const modelFile = env("BITNET_MODEL_FILE");
  const credentials = { email: env("BITNET_EMAIL"), password: env("BITNET_PASSWORD") };

  const client = new BitNetClient({ baseUrl });
  const tokens = await client.login(credentials);
  client.setTokens(tokens.access_token, tokens.refresh_token);
  const me = await client.getCurrentUser();
  say("login", { email: me.email, credential: me.credential_type });

  const key = await client.createApiKey({ name: "sdk-tour" });
  process.env.BITNET_BASE_URL = baseUrl;
  process.env.BITNET_API_KEY = key.key;
  const byKey = new BitNetClient(); // configured from BITNET_BASE_URL and BITNET_API_KEY
  let raw: Response | undefined;
  const viaKey = await byKey.getCurrentUser({ onResponse: (response) => { raw = response; } });
  say("api_key", { prefix: key.prefix, credential: viaKey.credential_type, raw_status: raw?.status ?? null });

  const file = new File([await openAsBlob(modelFile)], basename(modelFile));
  const small = await client.createModelMultipart({ file, name: "tour-multipart" });
  say("upload_multipart", { id: small.id, status: small.status });

  const record = await client.createModel({ name: "tour-f32" });
  const digest = createHash("sha256").update(readFileSync(modelFile)).digest("hex");
  const stream = Readable.toWeb(createReadStream(modelFile)) as ReadableStream<Uint8Array>; // streamed, chunked
  const model = await client.uploadModelFile(record.id, stream, { xContentSha256: digest });
  say("upload_raw", { id: model.id, status: model.status, size: model.size_bytes ?? statSync(modelFile).size });

  // Resumable upload: an earlier attempt stopped half-way (here: the first half sent as one
  // piece); uploadModelResumable asks the server's offset and sends the rest in Blob slices.
  const blob = await openAsBlob(modelFile);
  const half = Math.floor(blob.size / 2);
  const pending = await client.createModel({ name: "tour-resumable" });
  await client.uploadModelPiece(pending.id, blob.slice(0, half), { contentRange: `bytes 0-${half - 1}/${blob.size}` });
  const held = (await client.getModelUpload(pending.id)).offset;
  const positions: number[] = []; // the server's offset: at the start, then after each piece
  const resumed = await client.uploadModelResumable(pending.id, blob, {
    pieceSize: 65536, onProgress: (sent) => positions.push(sent),
  });
  say("upload_resumable", {
    status: resumed.model?.status, held, first_sent: positions[1], size: resumed.model?.size_bytes,
    sha256: resumed.model?.sha256,
  });
  await client.deleteModel(pending.id);

  const names: string[] = [];
  for await (const m of client.listModelsAll({ limit: 1 })) names.push(m.name); // one model per page
  say("list", { names: names.sort() });

  let job = await client.quantizeModel({ model_id: model.id, qtype: "tq2_0", mode: "async" });
  job = await client.waitForQuantizeJob(job.id, { timeoutMs: 300_000 });
  const quantized = job.result && "model_id" in job.result ? job.result.model_id : undefined;
  say("quantize", { status: job.status, model_id: quantized ?? null });

  const request: InferenceRequest = { model: String(quantized), prompt: "Hello", max_tokens: 8, temperature: 0 };
  const answer = await client.runInference(request);
  say("inference", { text: answer.text, tokens: answer.usage.completion_tokens });

  const pieces: string[] = [];
  let done: StreamDoneEvent | undefined;
  for await (const event of client.streamInference(request)) {
    if (event.event === "token") pieces.push(event.data.text);
    else done = event.data;
  }
  say("stream", { tokens: pieces.length, joined: pieces.join(""), done_text: done?.text ?? null });

  const socket = await client.connectInferenceSocket(); // the same generation over the WebSocket
  const messages = [];
  for await (const message of socket.generate(request)) messages.push(message);
  socket.close();
  say("websocket", { joined: messages.filter((m) => m.type === "token").map((m) => m.text).join(""),
                     last: messages.at(-1)?.type ?? null, user: socket.ready.user_id });

  const usage = await client.getAccountUsage({ groupBy: "operation" });
  say("usage", { requests: usage.totals.requests, operations: usage.buckets.map((b) => b.key).sort() });

  try {
    await client.getModel("mdl_0000000000missing", { timeoutMs: 10_000, headers: { "X-Tour": "1" } });
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    say("not_found", { status: error.status, title: error.title, request_id: error.requestId ?? null, kind: error.name });
  }

  const limited = process.env.BITNET_LIMITED_TOKEN;
  if (limited) {
    const smallTier = new BitNetClient({ baseUrl, token: limited, retry: { maxRetryAfterMs: 5000 } });
    for (let calls = 1; calls < 50; calls++) {
      try {
        await smallTier.getCurrentUser();
      } catch (error) {
        if (!(error instanceof RateLimitError)) throw error;
        say("rate_limited", { status: error.status, calls, retry_after: (error.retryAfterMs ?? 0) / 1000, kind: error.name });
        break;
      }
    }
  }

  try {
    await new BitNetClient({ baseUrl: "http://127.0.0.1:9", retry: false }).getVersion();
  } catch (error) {
    if (!(error instanceof ConnectionError)) throw error;
    say("connection_error", { kind: error.name, cause: (error.cause as Error | undefined)?.name ?? null });
  }

  const fresh = await client.login(credentials);
  let refreshed = 0;
  const stale = new BitNetClient({
    baseUrl,
    token: "expired-or-revoked",
    refreshToken: fresh.refresh_token,
    onTokens: () => refreshed++,
  });
  const user = await stale.getCurrentUser();
  say("refresh", { email: user.email, refreshed });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
