// The signed-in session: one SDK client, tokens in memory and sessionStorage (this tab only),
// refreshed silently by the SDK through /v1/auth/refresh. When a refresh fails, the sign-in
// dialog opens over the current page, so what the user typed stays where it is.
import { ApiError, BitNetClient, type CurrentUser, type Tokens } from "bitnet-client";

const STORE = "bitnet.portal.tokens";

interface Stored { access: string; refresh: string }

export interface Session {
  client: BitNetClient;
  user: CurrentUser;
}

let current: Session | null = null;
let reauth: (() => Promise<void>) | null = null;

function load(): Stored | null {
  try {
    const raw = sessionStorage.getItem(STORE);
    return raw ? (JSON.parse(raw) as Stored) : null;
  } catch {
    return null;
  }
}

function save(tokens: Stored | null): void {
  if (tokens) sessionStorage.setItem(STORE, JSON.stringify(tokens));
  else sessionStorage.removeItem(STORE);
}

/** A client for this origin; `onTokens` keeps the rotated refresh token. */
export function makeClient(stored?: Stored | null, extra: { fetch?: typeof fetch } = {}): BitNetClient {
  return new BitNetClient({
    baseUrl: location.origin,
    token: stored?.access,
    refreshToken: stored?.refresh,
    onTokens: (t: Tokens) => {
      const prev = load();
      save({ access: t.accessToken, refresh: t.refreshToken ?? prev?.refresh ?? "" });
    },
    retry: { maxRetries: 1 },
    ...extra,
  });
}

/** The stored tokens (for a second client, e.g. the upload one with progress). */
export function storedTokens(): Stored | null {
  return load();
}

export function session(): Session | null {
  return current;
}

/** Resume the tab's session if its tokens still work (refreshing them if needed). */
export async function resume(): Promise<Session | null> {
  const stored = load();
  if (!stored) return null;
  const client = makeClient(stored);
  try {
    current = { client, user: await client.getCurrentUser() };
    return current;
  } catch {
    save(null);
    return null;
  }
}

export async function signIn(email: string, password: string): Promise<Session> {
  const client = makeClient();
  const tokens = await client.login({ email, password });
  save({ access: tokens.access_token, refresh: tokens.refresh_token });
  client.setTokens(tokens.access_token, tokens.refresh_token);
  current = { client, user: await client.getCurrentUser() };
  return current;
}

export async function signOut(): Promise<void> {
  const stored = load();
  if (current && stored) {
    try {
      await current.client.logout({});
    } catch {
      // Signing out locally matters most; the refresh token expires anyway.
    }
  }
  save(null);
  current = null;
}

/** Register what to do when the session has expired (open the sign-in dialog). */
export function onExpired(handler: () => Promise<void>): void {
  reauth = handler;
}

/**
 * Run an SDK call with the session's client. A 401 (the SDK already tried a refresh)
 * opens the sign-in dialog and retries once signed in again; other errors propagate.
 */
export async function api<T>(call: (client: BitNetClient) => Promise<T>): Promise<T> {
  if (!current) throw new Error("not signed in");
  try {
    return await call(current.client);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || !reauth) throw error;
    await reauth();
    return await call(current.client);
  }
}
