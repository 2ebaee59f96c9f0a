// Resumable uploads: a Blob sent in `Content-Range` pieces (Blob.slice, so it works in browsers
// and in Node with `fs.openAsBlob`) that continues from the offset the server holds after a
// broken connection, a server restart or a 5xx. Hand-written runtime.

import { ApiError, ConnectionError } from "./errors.js";
import { sleep } from "./retry.js";

export interface ResumableOptions {
  /** Bytes per piece (default 8 MiB): progress and a retried piece move in these steps. */
  pieceSize?: number;
  /** Transient failures in a row before giving up (default 5); call again to resume later. */
  retries?: number;
  /** Called with the bytes the server holds: once at the start, then after every piece. */
  onProgress?: (sent: number, total: number) => void;
  /**
   * Hex SHA-256 of the whole file, checked by the server at the last byte. By default it is
   * computed with WebCrypto for files up to 512 MiB (WebCrypto reads the file whole); pass
   * it for larger files, or `false` to send none.
   */
  sha256?: string | false;
  /** Stops the upload (and its waits) when aborted. */
  signal?: AbortSignal;
}

/** The fields of the server's upload state the loop reads. */
export interface PieceState {
  offset: number;
  total_bytes?: number;
  complete?: boolean;
}

const DIGEST_LIMIT = 512 * 1024 * 1024;
const RESUMABLE_CONFLICTS = ["upload-in-progress", "upload-offset-mismatch"];

/** Worth resuming after: no connection, a 5xx or 429, or a piece that raced another. */
export function transientUploadError(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  if (error instanceof ApiError) {
    const slug = error.type.slice(error.type.lastIndexOf(":") + 1);
    return error.status >= 500 || error.status === 429 || (error.status === 409 && RESUMABLE_CONFLICTS.includes(slug));
  }
  return false;
}

async function digestOf(file: Blob, option: string | false | undefined): Promise<string | undefined> {
  if (option === false) return undefined;
  if (option !== undefined) return option;
  const subtle = (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
  if (!subtle || file.size > DIGEST_LIMIT) return undefined;
  const hash = new Uint8Array(await subtle.digest("SHA-256", await file.arrayBuffer()));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Send `file` with `send(piece, contentRange, sha256)` from the offset `state()` reports;
 * resolves to the last piece's state (`complete`). Throws after `retries` transient failures
 * in a row, or at once on any other error.
 */
export async function uploadResumable<S extends PieceState>(
  file: Blob,
  state: () => Promise<PieceState>,
  send: (piece: Blob, contentRange: string, sha256: string | undefined) => Promise<S>,
  options: ResumableOptions = {},
): Promise<S> {
  const size = file.size;
  if (size <= 0) throw new RangeError("a resumable upload needs a non-empty file");
  const pieceSize = Math.max(1, options.pieceSize ?? 8 * 1024 * 1024);
  const retries = options.retries ?? 5;
  const sha256 = await digestOf(file, options.sha256);
  let failures = 0;
  for (;;) {
    try {
      const held = await state();
      let offset = held.total_bytes === size ? held.offset : 0;
      options.onProgress?.(offset, size);
      for (;;) {
        const end = Math.min(size, offset + pieceSize);
        const status = await send(file.slice(offset, end), `bytes ${offset}-${end - 1}/${size}`, sha256);
        options.onProgress?.(status.offset, size);
        if (status.complete) return status;
        if (status.offset <= offset) throw new ConnectionError("the server took no bytes of the piece");
        offset = status.offset;
        failures = 0;
      }
    } catch (error) {
      if (!transientUploadError(error) || failures >= retries || options.signal?.aborted) throw error;
      failures += 1;
      await sleep(Math.min(30000, 500 * 2 ** (failures - 1)), options.signal);
    }
  }
}
