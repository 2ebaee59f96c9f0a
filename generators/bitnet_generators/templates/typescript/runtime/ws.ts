// The WebSocket client: token streaming and job progress over one connection. Hand-written
// runtime. Uses the platform's WebSocket (browsers, Node 22+; Node 20 with
// --experimental-websocket) or the constructor passed as `webSocket` (e.g. from "ws").

import { ApiError } from "./errors.js";

/** A server message (`WsServerMessage`): `type` is ready, token, done, progress or error. */
export type SocketMessage = { type: string; request_id?: string | null } & Record<string, unknown>;

/** The WebSocket constructor the socket uses. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface SocketOptions {
  /** A WebSocket implementation (default: the global one). */
  webSocket?: WebSocketConstructor;
  /** For connecting and the `ready` answer; default 10 s. */
  timeoutMs?: number;
}

let nextId = 1;

/** One authenticated WebSocket; `ready` is the server's greeting (user id, scopes). */
export class InferenceSocket {
  ready: SocketMessage = { type: "ready" };
  private readonly inbox: SocketMessage[] = [];
  private waiting: (() => void) | undefined;
  private failure: Error | undefined;

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener("message", (event: MessageEvent) => {
      this.inbox.push(JSON.parse(String(event.data)) as SocketMessage);
      this.wake();
    });
    ws.addEventListener("close", (event: CloseEvent) => {
      this.failure ??= closedError(event.code, event.reason);
      this.wake();
    });
  }

  /** Open `url` and authenticate with `credential` (an `auth` message, answered `ready`). */
  static async connect(url: string, credential: string, options: SocketOptions = {}): Promise<InferenceSocket> {
    const impl = options.webSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (impl === undefined) throw new Error("no WebSocket implementation: pass options.webSocket");
    const ws = new impl(url);
    const socket = new InferenceSocket(ws);
    const timeoutMs = options.timeoutMs ?? 10000;
    const timer = setTimeout(() => ws.close(), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        ws.addEventListener("open", () => resolve(), { once: true });
        ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
      });
      socket.send({ type: "auth", token: credential });
      socket.ready = await socket.take((m) => m.type === "ready");
      return socket;
    } catch (error) {
      ws.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  send(message: object): void {
    this.ws.send(JSON.stringify(message));
  }

  /** The next server message not taken by a running {@link generate}. */
  next(): Promise<SocketMessage> {
    return this.take(() => true);
  }

  /**
   * Run an `InferenceRequest`: its `token` messages, then `done`. An `error` message for it
   * throws {@link ApiError}; leaving the loop early cancels the generation.
   */
  async *generate(request: object, requestId = `r${nextId++}`): AsyncGenerator<SocketMessage> {
    this.send({ type: "generate", request_id: requestId, request });
    let finished = false;
    try {
      for (;;) {
        const message = await this.take((m) => m.request_id === requestId && ["token", "done", "error"].includes(m.type));
        if (message.type === "error") {
          finished = true;
          throw ApiError.fromProblem(message.error);
        }
        yield message;
        if (message.type === "done") {
          finished = true;
          return;
        }
      }
    } finally {
      if (!finished && this.failure === undefined) this.send({ type: "cancel", request_id: requestId });
    }
  }

  /** Receive `progress` messages (with the job) whenever the job changes. */
  subscribe(jobId: string): void {
    this.send({ type: "subscribe", job_id: jobId });
  }

  unsubscribe(jobId: string): void {
    this.send({ type: "unsubscribe", job_id: jobId });
  }

  close(): void {
    this.ws.close(1000);
  }

  private async take(match: (m: SocketMessage) => boolean): Promise<SocketMessage> {
    for (;;) {
      const index = this.inbox.findIndex(match);
      if (index >= 0) return this.inbox.splice(index, 1)[0];
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
  }

  private wake(): void {
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve?.();
  }
}

function closedError(code: number, reason: string): ApiError {
  const status = ({ 4401: 401, 4403: 403, 4429: 429 } as Record<number, number>)[code] ?? 0;
  return ApiError.create({ status, title: `WebSocket closed (${code})`, detail: reason || undefined });
}
