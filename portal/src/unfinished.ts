// Unfinished resumable uploads this browser started, kept in localStorage so that after a
// broken connection, a server restart or a page reload, choosing the same file again for
// the same model continues from the server's offset. A file is "the same" when its name,
// size and last-modified time match (the page cannot re-open a file by itself).

const STORE = "bitnet.portal.uploads";
const PIECE_SETTING = "bitnet.portal.upload-piece-bytes";
const DEFAULT_PIECE = 8 * 1024 * 1024;

export interface Unfinished {
  userId: string;
  modelId: string;
  modelName: string;
  fileName: string;
  size: number;
  lastModified: number;
}

function read(): Unfinished[] {
  try {
    const raw = localStorage.getItem(STORE);
    const list: unknown = raw ? JSON.parse(raw) : [];
    return Array.isArray(list) ? (list as Unfinished[]) : [];
  } catch {
    return [];
  }
}

function write(list: Unfinished[]): void {
  if (list.length) localStorage.setItem(STORE, JSON.stringify(list));
  else localStorage.removeItem(STORE);
}

/** The user's unfinished uploads, newest first. */
export function unfinishedUploads(userId: string): Unfinished[] {
  return read().filter((u) => u.userId === userId);
}

/** Remember (or refresh) the upload of `file` to a model. */
export function remember(userId: string, modelId: string, modelName: string, file: File): void {
  const entry: Unfinished = { userId, modelId, modelName, fileName: file.name, size: file.size,
    lastModified: file.lastModified };
  write([entry, ...read().filter((u) => u.modelId !== modelId)]);
}

export function forget(modelId: string): void {
  write(read().filter((u) => u.modelId !== modelId));
}

/** The user's unfinished upload of this very file, if any. */
export function matching(userId: string, file: File): Unfinished | undefined {
  return unfinishedUploads(userId).find((u) =>
    u.fileName === file.name && u.size === file.size && u.lastModified === file.lastModified);
}

/**
 * Bytes per piece: 8 MiB, or the positive integer stored under `bitnet.portal.upload-piece-bytes`
 * (smaller pieces move the progress bar in finer steps and lose less on a broken connection).
 */
export function pieceSize(): number {
  const chosen = Number(localStorage.getItem(PIECE_SETTING));
  return Number.isSafeInteger(chosen) && chosen > 0 ? chosen : DEFAULT_PIECE;
}
