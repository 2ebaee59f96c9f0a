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
    this.name = new.target.name;
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

  /** The error of the class for `init.status` ({@link NotFoundError} for 404, ...). */
  static create(init: ApiErrorInit): ApiError {
    const kind = init.status >= 500 ? InternalServerError : BY_STATUS[init.status] ?? ApiError;
    return new kind(init);
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
    return ApiError.create({
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

/** 400: the request is malformed or breaks a rule; `errors` names the fields. */
export class BadRequestError extends ApiError {}
/** 401: the credential is missing, invalid or expired. */
export class AuthenticationError extends ApiError {}
/** 403: the credential lacks the scope (or the account the right) for this operation. */
export class PermissionDeniedError extends ApiError {}
/** 404: no such resource, or not yours. */
export class NotFoundError extends ApiError {}
/** 409: the resource's state does not allow this now. */
export class ConflictError extends ApiError {}
/** 422: well-formed, but the server cannot do it. */
export class UnprocessableEntityError extends ApiError {}
/** 429: the rate limit or a quota is spent; `retryAfterMs` says when to come back. */
export class RateLimitError extends ApiError {}
/** 5xx: the server failed (retried automatically where that is safe). */
export class InternalServerError extends ApiError {}

const BY_STATUS: Record<number, new (init: ApiErrorInit) => ApiError> = {
  400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
  409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError,
};

/** No answer: the connection failed or broke (the fetch error is `cause`). */
export class ConnectionError extends Error {
  constructor(message = "connection error", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConnectionError";
  }
}

/** A request (one attempt) took longer than the configured timeout. */
export class TimeoutError extends ConnectionError {
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
