// The HTTP core every generated method calls: URL and body encoding, credentials, token
// refresh, timeouts, retries and error mapping. Hand-written runtime; it uses only what
// Node 18+ and browsers provide (fetch, AbortController, TextDecoder, FormData, Blob).

import { ApiError, ConnectionError, TimeoutError } from "./errors.js";
import { backoffMs, parseRetryAfter, retryPolicy, retryableStatus, sleep, type RetryOptions } from "./retry.js";
import { readSse } from "./sse.js";

/** New tokens after a refresh; store `refreshToken` if you persist sessions (they rotate). */
export interface Tokens {
  accessToken: string;
  refreshToken?: string;
  expiresIn?: number;
}

export interface ClientOptions {
  /**
   * The server, e.g. `http://localhost:8080`; the API's base path is appended unless present.
   * Default (Node): the `BITNET_BASE_URL` environment variable.
   */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer <token>`: an access token or an API key. */
  token?: string;
  /** Sent in the API key header when no `token` is set. Default (Node): `BITNET_API_KEY`. */
  apiKey?: string;
  /** With a refresh token, a 401 triggers one refresh and one retry of the request. */
  refreshToken?: string;
  /** Called after each refresh with the new tokens. */
  onTokens?: (tokens: Tokens) => void;
  /** Per attempt, until the whole answer is read (streams: until headers). Default 60 s. */
  timeoutMs?: number;
  retry?: RetryOptions | false;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}

/** Per-call options, the last argument of every method. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  retry?: RetryOptions | false;
  headers?: Record<string, string>;
  /** Called with the raw successful response (status, headers) before its body is read. */
  onResponse?: (response: Response) => void;
  /**
   * Called as a raw upload's bytes are sent (`total` when the body's size is known). A Blob
   * or bytes body is then streamed (Node), and re-read from the start on a retry.
   */
  onUploadProgress?: (sent: number, total: number | undefined) => void;
}

/** Raw request bodies: files (Blob, e.g. `fs.openAsBlob(path)`), bytes, or a stream (not retried). */
export type BinaryBody = Blob | ArrayBuffer | Uint8Array | ReadableStream<Uint8Array>;

export type QueryValue = string | number | boolean | null | undefined | ReadonlyArray<string | number | boolean>;

/** What a generated method asks for. */
export interface Call {
  method: string;
  path: string;
  query?: Record<string, QueryValue>;
  headers?: Record<string, string | undefined>;
  json?: unknown;
  multipart?: object;
  form?: object;
  binary?: BinaryBody;
  secured: boolean;
  idempotencyHeader?: string;
}

/** Facts of the API the generated client passes in. */
export interface ApiInfo {
  basePath: string;
  apiKeyHeader?: string;
  refreshPath?: string;
  /** Sent as `User-Agent` where the platform allows it (Node; browsers set their own). */
  userAgent?: string;
}

/** An environment variable under Node (undefined in browsers). */
function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

interface Sent {
  response: Response;
  /** Stop the per-attempt timeout (reading a stream may take longer). */
  stopTimer: () => void;
  /** Forget the caller's signal; call when done with the response. */
  dispose: () => void;
}

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

export class HttpCore {
  private accessToken?: string;
  private refreshToken?: string;
  private refreshing?: Promise<boolean>;
  private readonly root: string;
  private readonly fetchImpl: typeof fetch;

  private readonly options: ClientOptions;

  constructor(options: ClientOptions, private readonly info: ApiInfo) {
    this.options = { ...options, apiKey: options.apiKey ?? env("BITNET_API_KEY") };
    const base = (options.baseUrl ?? env("BITNET_BASE_URL") ?? "").replace(/\/+$/, "");
    if (!base) throw new Error("no baseUrl: pass options.baseUrl or set BITNET_BASE_URL");
    this.root = info.basePath && !base.endsWith(info.basePath) ? base + info.basePath : base;
    this.accessToken = options.token;
    this.refreshToken = options.refreshToken;
    const impl = options.fetch ?? globalThis.fetch;
    if (typeof impl !== "function") throw new Error("no fetch implementation: pass options.fetch");
    this.fetchImpl = (input, init) => impl(input, init);
  }

  /** Use these credentials from now on (e.g. after logging in). */
  setTokens(accessToken: string | undefined, refreshToken?: string): void {
    this.accessToken = accessToken;
    if (refreshToken !== undefined) this.refreshToken = refreshToken;
  }

  /** The API's root URL (base URL and base path). */
  get rootUrl(): string {
    return this.root;
  }

  /** The credential a WebSocket authenticates with: the bearer token, else the API key. */
  get credential(): string | undefined {
    return this.accessToken ?? this.options.apiKey;
  }

  get token(): string | undefined {
    return this.accessToken;
  }

  async json<T>(call: Call, options?: RequestOptions): Promise<T> {
    const sent = await this.send(call, options, "application/json");
    try {
      return (await sent.response.json()) as T;
    } finally {
      sent.stopTimer();
      sent.dispose();
    }
  }

  async text(call: Call, options?: RequestOptions): Promise<string> {
    const sent = await this.send(call, options, "text/plain, */*");
    try {
      return await sent.response.text();
    } finally {
      sent.stopTimer();
      sent.dispose();
    }
  }

  async empty(call: Call, options?: RequestOptions): Promise<void> {
    const sent = await this.send(call, options, "application/json");
    try {
      await sent.response.arrayBuffer();
    } finally {
      sent.stopTimer();
      sent.dispose();
    }
  }

  /** The response with its body unread (downloads); the timeout stops at the headers. */
  async raw(call: Call, options?: RequestOptions): Promise<Response> {
    const sent = await this.send(call, options, "*/*");
    sent.stopTimer();
    return sent.response;
  }

  /**
   * Server-Sent Events of a call, parsed as they arrive. Events named in `errorEvents` end
   * the stream with an {@link ApiError}; events not in `known` are skipped.
   */
  async *events<E>(call: Call, options: RequestOptions | undefined, known: readonly string[],
                   errorEvents: readonly string[]): AsyncGenerator<E> {
    const sent = await this.send(call, options, "text/event-stream");
    sent.stopTimer();
    try {
      const body = sent.response.body;
      if (body === null) return;
      for await (const message of readSse(body)) {
        if (errorEvents.includes(message.event)) {
          throw ApiError.fromProblem(parseJson(message.data), undefined, sent.response.headers);
        }
        if (!known.includes(message.event)) continue;
        yield { event: message.event, id: message.id || undefined, data: parseJson(message.data) } as E;
      }
    } finally {
      sent.dispose();
    }
  }

  private async send(call: Call, options: RequestOptions = {}, accept: string): Promise<Sent> {
    const policy = retryPolicy(options.retry ?? this.options.retry);
    const headers = { ...(call.headers ?? {}) };
    if (call.idempotencyHeader && headers[call.idempotencyHeader] === undefined) {
      headers[call.idempotencyHeader] = newIdempotencyKey(); // one key for every attempt
    }
    const idempotent = IDEMPOTENT_METHODS.has(call.method) || call.idempotencyHeader !== undefined;
    const replayable = !(call.binary instanceof ReadableStream);
    const url = this.url(call);
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const usedToken = this.accessToken;
      const guard = new AttemptGuard(options.signal, options.timeoutMs ?? this.options.timeoutMs ?? 60000);
      let response: Response;
      try {
        response = await this.fetchImpl(url, this.init(call, { ...headers, ...(options.headers ?? {}) }, accept,
                                                        usedToken, guard.signal, options.onUploadProgress));
      } catch (error) {
        guard.stopTimer();
        guard.dispose();
        if (options.signal?.aborted) throw options.signal.reason ?? error;
        const failure = guard.timedOut ? new TimeoutError(`${call.method} ${call.path} timed out`)
          : new ConnectionError(`${call.method} ${call.path}: ${String(error)}`, { cause: error });
        if (attempt < policy.maxRetries && idempotent && replayable) {
          await sleep(backoffMs(attempt, policy), options.signal);
          continue;
        }
        throw failure;
      }
      if (response.ok) {
        options.onResponse?.(response);
        return { response, stopTimer: () => guard.stopTimer(), dispose: () => guard.dispose() };
      }
      const error = await errorFrom(response);
      guard.stopTimer();
      guard.dispose();
      if (response.status === 401 && call.secured && !refreshed && this.canRefresh()) {
        refreshed = true;
        if (await this.refresh(usedToken, options.signal)) {
          attempt--; // the refresh retry is not a backoff retry
          continue;
        }
        throw error;
      }
      const waitMs = error.retryAfterMs ?? backoffMs(attempt, policy);
      const retry = attempt < policy.maxRetries && replayable && retryableStatus(response.status, idempotent)
        && waitMs <= policy.maxRetryAfterMs;
      if (!retry) throw error;
      await sleep(waitMs, options.signal);
    }
  }

  private url(call: Call): string {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(call.query ?? {})) {
      if (value === undefined || value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
    }
    const qs = query.toString();
    return this.root + call.path + (qs ? `?${qs}` : "");
  }

  private init(call: Call, extra: Record<string, string | undefined>, accept: string, token: string | undefined,
               signal: AbortSignal, onProgress?: RequestOptions["onUploadProgress"]): RequestInit {
    const headers = new Headers(this.options.headers ?? {});
    const isNode = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    if (this.info.userAgent && isNode && !headers.has("User-Agent")) headers.set("User-Agent", this.info.userAgent);
    headers.set("Accept", accept);
    if (call.secured) {
      if (token) headers.set("Authorization", `Bearer ${token}`);
      else if (this.options.apiKey && this.info.apiKeyHeader) headers.set(this.info.apiKeyHeader, this.options.apiKey);
    }
    for (const [key, value] of Object.entries(extra)) if (value !== undefined) headers.set(key, value);
    const init: RequestInit & { duplex?: string } = { method: call.method, headers, signal };
    if (call.json !== undefined) {
      headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(call.json);
    } else if (call.form !== undefined) {
      init.body = formBody(call.form); // fetch sets the urlencoded Content-Type
    } else if (call.multipart !== undefined) {
      init.body = multipartBody(call.multipart); // fetch sets the boundary
    } else if (call.binary !== undefined) {
      headers.set("Content-Type", "application/octet-stream");
      init.body = onProgress ? counted(call.binary, onProgress) : (call.binary as BodyInit);
      if (init.body instanceof ReadableStream) init.duplex = "half"; // streamed upload (Node)
    }
    return init;
  }

  private canRefresh(): boolean {
    return this.refreshToken !== undefined && this.info.refreshPath !== undefined;
  }

  /** One refresh at a time; a call whose token was already replaced just retries. */
  private refresh(usedToken: string | undefined, signal?: AbortSignal): Promise<boolean> {
    if (this.accessToken !== usedToken) return Promise.resolve(true);
    if (this.refreshing === undefined) {
      this.refreshing = this.exchangeRefreshToken(signal).finally(() => {
        this.refreshing = undefined;
      });
    }
    return this.refreshing;
  }

  private async exchangeRefreshToken(signal?: AbortSignal): Promise<boolean> {
    const guard = new AttemptGuard(signal, this.options.timeoutMs ?? 60000);
    try {
      const response = await this.fetchImpl(this.root + (this.info.refreshPath ?? ""), {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: this.refreshToken ?? "" }),
        signal: guard.signal,
      });
      if (!response.ok) {
        await response.arrayBuffer().catch(() => undefined);
        return false;
      }
      const data = (await response.json()) as Record<string, unknown>;
      if (typeof data.access_token !== "string") return false;
      this.accessToken = data.access_token;
      if (typeof data.refresh_token === "string") this.refreshToken = data.refresh_token;
      this.options.onTokens?.({
        accessToken: data.access_token,
        refreshToken: this.refreshToken,
        expiresIn: typeof data.expires_in === "number" ? data.expires_in : undefined,
      });
      return true;
    } catch {
      return false;
    } finally {
      guard.stopTimer();
      guard.dispose();
    }
  }
}

/** Percent-encode one path segment. */
export function pathSegment(value: string | number | boolean): string {
  return encodeURIComponent(String(value));
}

/** An abort signal for one attempt: the caller's signal, plus a timeout that can be stopped. */
class AttemptGuard {
  readonly signal: AbortSignal;
  timedOut = false;
  private readonly controller = new AbortController();
  private timer?: ReturnType<typeof setTimeout>;
  private readonly forward: () => void;

  constructor(private readonly outer: AbortSignal | undefined, timeoutMs: number) {
    this.signal = this.controller.signal;
    this.forward = () => this.controller.abort(outer?.reason);
    if (outer?.aborted) this.forward();
    else outer?.addEventListener("abort", this.forward, { once: true });
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.controller.abort(new TimeoutError());
      }, timeoutMs);
    }
  }

  stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  dispose(): void {
    this.outer?.removeEventListener("abort", this.forward);
  }
}

async function errorFrom(response: Response): Promise<ApiError> {
  const retryAfterMs = parseRetryAfter(response.headers.get("Retry-After"));
  const text = await response.text().catch(() => "");
  const type = response.headers.get("Content-Type") ?? "";
  const parsed = type.includes("json") ? parseJson(text) : text;
  const requestId = response.headers.get("X-Request-ID") ?? undefined; // when the body does not name it
  if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
    const problem = parsed as Record<string, unknown>;
    const withId = typeof problem.request_id === "string" || requestId === undefined ? problem
      : { ...problem, request_id: requestId };
    return ApiError.fromProblem(withId, response.status, response.headers, retryAfterMs);
  }
  return ApiError.create({ status: response.status, title: response.statusText || undefined,
                           headers: response.headers, body: parsed, retryAfterMs, requestId });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function formValue(value: unknown): string {
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}

function formBody(form: object): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(form)) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, formValue(item));
  }
  return params.toString();
}

function multipartBody(form: object): FormData {
  const data = new FormData();
  for (const [key, value] of Object.entries(form)) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item instanceof Blob) {
        const name = (item as Blob & { name?: unknown }).name;
        data.append(key, item, typeof name === "string" && name ? name : key);
      } else {
        data.append(key, formValue(item));
      }
    }
  }
  return data;
}

/** The body as a stream that reports each chunk as fetch pulls it (a fresh one per attempt). */
function counted(body: BinaryBody, onProgress: (sent: number, total: number | undefined) => void): ReadableStream<Uint8Array> {
  const source = body instanceof ReadableStream ? body : body instanceof Blob ? body.stream()
    : new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(body instanceof Uint8Array ? body : new Uint8Array(body));
        controller.close();
      },
    });
  const total = body instanceof Blob ? body.size : body instanceof ReadableStream ? undefined : body.byteLength;
  let sent = 0;
  return source.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.byteLength;
      onProgress(sent, total);
      controller.enqueue(chunk);
    },
  }));
}

function newIdempotencyKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
