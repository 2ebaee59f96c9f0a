// Polling a job until it reaches a final state. Hand-written runtime.

import { WaitTimeoutError } from "./errors.js";
import { sleep } from "./retry.js";

export interface WaitOptions {
  /** Give up (throwing {@link WaitTimeoutError}) after this long (default 10 minutes). */
  timeoutMs?: number;
  /** First pause between polls (default 250 ms); grows by half each poll. */
  intervalMs?: number;
  /** Longest pause between polls (default 5 s). */
  maxIntervalMs?: number;
  /** Stops waiting when aborted. */
  signal?: AbortSignal;
  /** Called with every state polled (progress bars). */
  onPoll?: (state: unknown) => void;
}

/** Call `poll` until `done` holds for its answer; returns that answer. */
export async function waitFor<T>(poll: () => Promise<T>, done: (state: T) => boolean, options: WaitOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 600000;
  const deadline = Date.now() + timeoutMs;
  let interval = options.intervalMs ?? 250;
  const maxInterval = options.maxIntervalMs ?? 5000;
  for (;;) {
    const state = await poll();
    options.onPoll?.(state);
    if (done(state)) return state;
    const left = deadline - Date.now();
    if (left <= 0) throw new WaitTimeoutError(state, timeoutMs);
    await sleep(Math.min(interval, left), options.signal);
    interval = Math.min(maxInterval, interval * 1.5);
  }
}
