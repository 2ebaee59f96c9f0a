// Errors the client throws. Hand-written runtime, shared by every generated client.

/** One invalid input named by a problem's `errors` member. */
export interface ProblemField {
  field: string;
  message: string;
}

/** What {@link ApiError} is built from. */
export interface ApiErrorInit {
  status: number;
  type?: string;
  title?: string;
  detail?: string;
  instance?: string;
  errors?: ProblemField[];
  requestId?: string;
  retryAfterMs?: number;
  headers?: Headers;
  body?: unknown;
}

/**
 * An error answer of the API. When the server sent Problem Details (RFC 9457,
 * `application/problem+json`), its members are copied here; `body` keeps the parsed
 * (or raw text) body whatever it was.
 */
export class ApiError extends Error {
  /** HTTP status of the answer (the problem's `status` when they differ). */
  readonly status: number;
  /** URI naming the problem type; `about:blank` when the status says it all. */
  readonly type: string;
  readonly title: string;
  readonly detail?: string;
  readonly instance?: string;
  /** One entry per invalid input. */
  readonly errors: ProblemField[];
  /** The server's id of the request (quote it in bug reports). */
  readonly requestId?: string;
  /** From `Retry-After`, when the server sent one. */
  readonly retryAfterMs?: number;
  readonly headers: Headers;
  readonly body: unknown;

  constructor(init: ApiErrorInit) {
    const title = init.title ?? `HTTP ${init.status}`;
    super(init.detail ? `${init.status} ${title}: ${init.detail}` : `${init.status} ${title}`);
    this.name = "ApiError";
    this.status = init.status;
    this.type = init.type ?? "about:blank";
    this.title = title;
    this.detail = init.detail;
    this.instance = init.instance;
    this.errors = init.errors ?? [];
    this.requestId = init.requestId;
    this.retryAfterMs = init.retryAfterMs;
    this.headers = init.headers ?? new Headers();
    this.body = init.body;
  }

  /** Build from a problem object (an error event of a stream, or a parsed body). */
  static fromProblem(problem: unknown, status?: number, headers?: Headers, retryAfterMs?: number): ApiError {
    const p = (typeof problem === "object" && problem !== null ? problem : {}) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
    const errors = Array.isArray(p.errors)
      ? p.errors
          .filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null)
          .map((e) => ({ field: String(e.field ?? ""), message: String(e.message ?? "") }))
      : [];
    return new ApiError({
      status: status ?? (typeof p.status === "number" ? p.status : 0),
      type: str(p.type),
      title: str(p.title),
      detail: str(p.detail),
      instance: str(p.instance),
      errors,
      requestId: str(p.request_id),
      retryAfterMs,
      headers,
      body: problem,
    });
  }
}

/** A request (one attempt) took longer than the configured timeout. */
export class TimeoutError extends Error {
  constructor(message = "the request timed out") {
    super(message);
    this.name = "TimeoutError";
  }
}

/** A job waiter gave up before the job reached a final state; `last` is the last state seen. */
export class WaitTimeoutError<T = unknown> extends Error {
  readonly last: T;

  constructor(last: T, timeoutMs: number) {
    super(`the job did not finish within ${timeoutMs} ms`);
    this.name = "WaitTimeoutError";
    this.last = last;
  }
}
