// Cursor pagination: every item of every page, fetching the next page only when needed.
// Hand-written runtime.

/**
 * Iterate the items of a cursor-paginated list. `fetchPage` gets the cursor to send
 * (`undefined` for the first page); iteration stops when `next` gives no cursor.
 */
export async function* paginate<P, T>(
  fetchPage: (cursor: string | undefined) => Promise<P>,
  items: (page: P) => T[],
  next: (page: P) => string | null | undefined,
  startCursor?: string,
): AsyncGenerator<T> {
  let cursor = startCursor;
  for (;;) {
    const page = await fetchPage(cursor);
    yield* items(page);
    const following = next(page);
    if (following === null || following === undefined || following === "" || following === cursor) return;
    cursor = following;
  }
}
