// Tests of the generated TypeScript SDK's runtime, run by tests/generators/test_typescript.py
// with `node --test` against the compiled SDK (SDK_DIST names its dist/ folder). Each test
// talks HTTP to a real node:http server.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";

const sdk = await import(`${process.env.SDK_DIST}/index.js`);
const { BitNetClient, ApiError, SseParser, WaitTimeoutError, TimeoutError } = sdk;

const JOB = {
  id: "job_0123456789", kind: "quantize", status: "queued", progress: 0, model_id: "mdl_0123456789",
  created_at: "2025-04-01T12:00:00Z", started_at: null, finished_at: null, attempts: 0, cancel_requested: false,
  links: { self: "s", cancel: "c" },
};

async function serve(handler) {
  const requests = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const record = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) };
    requests.push(record);
    await handler(record, res, requests.length);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

function problem(res, status, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/problem+json", ...headers });
  res.end(JSON.stringify({ type: "about:blank", title: "Oops", status, detail: "went wrong", request_id: "req_1",
                           errors: [{ field: "a", message: "b" }] }));
}

function json(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

const fast = { maxRetries: 3, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 1000 };

test("a job-creating POST is retried with one Idempotency-Key", async () => {
  const server = await serve((req, res, n) => (n < 3 ? problem(res, 503) : json(res, 202, JOB)));
  try {
    const client = new BitNetClient({ baseUrl: server.url, token: "t0", retry: fast });
    const job = await client.quantizeModel({ model_id: "mdl_0123456789", qtype: "tq2_0" });
    assert.equal(job.id, "job_0123456789");
    const keys = new Set(server.requests.map((r) => r.headers["idempotency-key"]));
    assert.equal(server.requests.length, 3);
    assert.equal(keys.size, 1);
    assert.ok([...keys][0]);
    for (const r of server.requests) {
      assert.equal(r.url, "/v1/quantize");
      assert.equal(r.headers.authorization, "Bearer t0");
    }
  } finally {
    await server.close();
  }
});

test("a plain POST is not retried on 500", async () => {
  const server = await serve((req, res) => problem(res, 500));
  try {
    const client = new BitNetClient({ baseUrl: server.url, apiKey: "k", retry: fast });
    await assert.rejects(client.createApiKey({ name: "x" }), (e) => e instanceof ApiError && e.status === 500);
    assert.equal(server.requests.length, 1);
    assert.equal(server.requests[0].headers["x-api-key"], "k");
  } finally {
    await server.close();
  }
});

test("a long Retry-After is thrown at once with the problem's fields", async () => {
  const server = await serve((req, res) => problem(res, 429, { "Retry-After": "3600" }));
  try {
    const client = new BitNetClient({ baseUrl: server.url, token: "t", retry: fast });
    const error = await client.getAccount().then(() => undefined, (e) => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.status, error.title, error.detail, error.requestId, error.retryAfterMs, error.errors],
                     [429, "Oops", "went wrong", "req_1", 3600000, [{ field: "a", message: "b" }]]);
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test("a 401 refreshes once for concurrent calls, then retries", async () => {
  let refreshes = 0;
  const server = await serve(async (req, res) => {
    if (req.url === "/v1/auth/refresh") {
      refreshes++;
      assert.equal(req.headers["content-type"], "application/json");
      assert.deepEqual(JSON.parse(req.body.toString()), { refresh_token: "r0" });
      await new Promise((resolve) => setTimeout(resolve, 20));
      json(res, 200, { access_token: "t1", refresh_token: "r1", token_type: "Bearer", expires_in: 900,
                       refresh_expires_in: 9, scope: "" });
    } else if (req.headers.authorization !== "Bearer t1") {
      problem(res, 401);
    } else {
      json(res, 200, { id: "usr_0123456789", email: "a@example.com", tier: "developer", is_admin: false,
                       created_at: "2025-04-01T12:00:00Z", credential_type: "access_token", scopes: [] });
    }
  });
  try {
    const seen = [];
    const client = new BitNetClient({ baseUrl: server.url, token: "t0", refreshToken: "r0",
                                      onTokens: (t) => seen.push(t) });
    const users = await Promise.all([1, 2, 3, 4].map(() => client.getCurrentUser()));
    assert.deepEqual(users.map((u) => u.email), Array(4).fill("a@example.com"));
    assert.equal(refreshes, 1);
    assert.deepEqual(seen.map((t) => [t.accessToken, t.refreshToken]), [["t1", "r1"]]);
  } finally {
    await server.close();
  }
});

test("the SSE parser handles CRLF, CR, LF, comments and split chunks", () => {
  const wire = "\ufeff: keep-alive\r\nevent: token\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\nevent: x\n\ndata: c\r\rdata: d\n\n";
  for (const size of [1, 2, 3, 5, wire.length]) {
    const parser = new SseParser();
    const got = [];
    for (let i = 0; i < wire.length; i += size) got.push(...parser.feed(wire.slice(i, i + size)));
    got.push(...parser.end());
    assert.deepEqual(got.map((m) => `${m.event}|${m.id}|${m.data}`), ["token|7|a\nb", "message|7|c", "message|7|d"]);
  }
});

test("a stream yields each event before the next is sent, and ends on an error event", async () => {
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  const server = await serve(async (req, res) => {
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    res.write('event: token\nid: 0\ndata: {"index":0,"token_id":5,"text":" Pa","logprob":null}\n\n');
    await released; // written only once the client has the first event
    res.end('event: error\ndata: {"title":"Gone","status":503}\n\n');
  });
  try {
    const events = new BitNetClient({ baseUrl: server.url, token: "t" }).streamInference({ model: "m" });
    const first = await events.next();
    assert.deepEqual([first.value.event, first.value.id, first.value.data.text], ["token", "0", " Pa"]);
    release();
    await assert.rejects(events.next(), (e) => e instanceof ApiError && e.status === 503 && e.title === "Gone");
    assert.equal(server.requests[0].headers.accept, "text/event-stream");
  } finally {
    await server.close();
  }
});

test("pagination follows next_cursor", async () => {
  const item = (id) => ({ id, name: "k", prefix: "p", scopes: [], created_at: "2025-04-01T12:00:00Z",
                          last_used_at: null, expires_at: null });
  const server = await serve((req, res) => {
    const cursor = new URL(req.url, "http://x").searchParams.get("cursor");
    if (cursor === null) json(res, 200, { data: [item("a"), item("b")], next_cursor: "c2" });
    else json(res, 200, { data: [item("c")], next_cursor: null });
  });
  try {
    const ids = [];
    for await (const key of new BitNetClient({ baseUrl: server.url }).listApiKeysAll({ limit: 2 })) ids.push(key.id);
    assert.deepEqual(ids, ["a", "b", "c"]);
    assert.ok(server.requests.every((r) => r.url.includes("limit=2")));
  } finally {
    await server.close();
  }
});

test("the job waiter polls until final, or times out with the last state", async () => {
  const server = await serve((req, res, n) => {
    const never = req.url.endsWith("/never");
    json(res, 200, { ...JOB, status: !never && n === 3 ? "succeeded" : "running" });
  });
  try {
    const client = new BitNetClient({ baseUrl: server.url });
    const job = await client.waitForQuantizeJob("job_x", { intervalMs: 1 });
    assert.equal(job.status, "succeeded");
    assert.equal(server.requests.length, 3);
    await assert.rejects(client.waitForQuantizeJob("never", { timeoutMs: 30, intervalMs: 5 }),
                         (e) => e instanceof WaitTimeoutError && e.last.status === "running");
  } finally {
    await server.close();
  }
});

test("a raw upload sends a Blob's bytes and resends them on a retry", async () => {
  const data = new Uint8Array(200000).map((_, i) => i % 251);
  const server = await serve((req, res, n) => {
    if (n === 1) return problem(res, 503, { "Retry-After": "0" });
    json(res, 200, { id: "mdl_0123456789", status: "ready" });
  });
  try {
    const client = new BitNetClient({ baseUrl: server.url, retry: fast });
    const model = await client.uploadModelFile("mdl_0123456789", new Blob([data]));
    assert.equal(model.status, "ready");
    assert.equal(server.requests.length, 2);
    for (const r of server.requests) {
      assert.deepEqual(new Uint8Array(r.body), data);
      assert.equal(r.headers["content-type"], "application/octet-stream");
      assert.equal(r.headers["content-length"], String(data.length));
    }
    // With a progress callback the Blob is streamed (a fresh stream for each attempt) and counted.
    const progress = [];
    const again = await client.uploadModelFile("mdl_0123456789", new Blob([data]), undefined,
                                               { onUploadProgress: (sent, total) => progress.push([sent, total]) });
    assert.equal(again.status, "ready");
    assert.deepEqual(new Uint8Array(server.requests[2].body), data);
    assert.deepEqual(progress.at(-1), [data.length, data.length]);
    assert.ok(progress.every(([sent, total], i) => total === data.length && (i === 0 || sent > progress[i - 1][0])));
  } finally {
    await server.close();
  }
});

test("an attempt that takes too long throws TimeoutError", async () => {
  const server = await serve(async (req, res) => {
    await new Promise((resolve) => setTimeout(resolve, 500));
    json(res, 200, { version: "1", api_version: "1" });
  });
  try {
    const client = new BitNetClient({ baseUrl: server.url, timeoutMs: 50, retry: false });
    await assert.rejects(client.getVersion(), (e) => e instanceof TimeoutError);
  } finally {
    await server.close();
  }
});

test("error answers throw one ApiError subclass per status", async () => {
  const expected = { 400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                     404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError",
                     429: "RateLimitError", 500: "InternalServerError", 418: "ApiError" };
  const server = await serve((req, res) => problem(res, Number(req.url.split("/").pop().replace("mdl_", "")),
                                                   { "Retry-After": "3600" }));
  try {
    const client = new BitNetClient({ baseUrl: server.url, token: "t", retry: false });
    for (const [status, name] of Object.entries(expected)) {
      const error = await client.getModel(`mdl_${status}`).then(() => undefined, (e) => e);
      assert.ok(error instanceof ApiError && error instanceof sdk[name], `${status}: ${error}`);
      assert.equal(error.constructor, sdk[name]);
      assert.equal(error.status, Number(status));
      assert.equal(error.name, name);
    }
  } finally {
    await server.close();
  }
});

test("a refused connection throws ConnectionError with the fetch error as cause", async () => {
  const server = await serve((req, res) => json(res, 200, {}));
  const url = server.url;
  await server.close(); // nothing listens there now
  const client = new BitNetClient({ baseUrl: url, token: "t", retry: false });
  const error = await client.getAccount().then(() => undefined, (e) => e);
  assert.ok(error instanceof sdk.ConnectionError, String(error));
  assert.ok(!(error instanceof TimeoutError));
  assert.ok(error.cause instanceof Error);
});

test("environment configuration, User-Agent, per-call headers and the raw response", async () => {
  const server = await serve((req, res) => {
    res.writeHead(200, { "Content-Type": "application/json", "X-Request-ID": "req_raw" });
    res.end(JSON.stringify({ status: "ok" }));
  });
  const saved = { url: process.env.BITNET_BASE_URL, key: process.env.BITNET_API_KEY };
  process.env.BITNET_BASE_URL = server.url;
  process.env.BITNET_API_KEY = "bn_env";
  try {
    const client = new BitNetClient();
    let raw;
    await client.getAccount({ headers: { "X-Trace": "1" }, timeoutMs: 5000, onResponse: (r) => { raw = r; } });
    const [req] = server.requests;
    assert.equal(req.url, "/v1/account");
    assert.equal(req.headers["x-api-key"], "bn_env");
    assert.equal(req.headers["x-trace"], "1");
    assert.match(req.headers["user-agent"], /^bitnet-client\/\d+\.\d+\.\d+ \(node\)$/);
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get("X-Request-ID"), "req_raw");
    delete process.env.BITNET_BASE_URL;
    assert.throws(() => new BitNetClient(), /BITNET_BASE_URL/);
  } finally {
    if (saved.url === undefined) delete process.env.BITNET_BASE_URL;
    else process.env.BITNET_BASE_URL = saved.url;
    if (saved.key === undefined) delete process.env.BITNET_API_KEY;
    else process.env.BITNET_API_KEY = saved.key;
    await server.close();
  }
});
