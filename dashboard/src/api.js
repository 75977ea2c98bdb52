// The page's link to eoc-server: the session (sign-in with a token, who the
// token belongs to), REST calls and the WebSocket with reconnection.
//
// The server checks every request: the token is sent as
// `Authorization: Bearer …` and, on the WebSocket (browsers cannot set its
// headers), as `?token=`. The page keeps only the token, in sessionStorage
// (gone when the tab closes); who the user is and what they may do come
// from `GET /api/v1/me` on every load, so a revoked or rotated token, or a
// changed role, is noticed at once. The tools shown follow the server's
// rule book ({@link capabilities}), which still checks every write: a
// refusal (403) is shown as the server's message.

import { t } from './i18n.js';

const SESSION_KEY = 'eoc.session';
const NOTICE_KEY = 'eoc.notice';

/** Roles the server knows (`GET /api/v1/me`), from most to least power. */
export const ROLES = ['chair', 'operator', 'responder', 'site_manager', 'viewer'];

/** Longest token the page accepts in the form (the server's are 60 characters). */
export const MAX_TOKEN_LEN = 512;

/** First reconnection delay; doubled after each failure up to {@link MAX_BACKOFF_MS}. */
export const MIN_BACKOFF_MS = 500;

/** Longest wait between reconnection attempts, so a restarted server is found within this. */
export const MAX_BACKOFF_MS = 15_000;

/** WebSocket close code of a connection whose token was revoked or rotated (RFC 6455 "policy violation"). */
export const CLOSE_POLICY = 1008;

/**
 * What the page offers a role, mirroring the server's rule book: only a
 * chair issues, updates and cancels alerts; chairs and operators assign
 * tasks (and accept the engine's proposals), preview alerts and read the
 * audit trail; every other role (viewer, and a responder's or site
 * manager's account opened in a browser) only reads.
 */
export function capabilities(role) {
  const chair = role === 'chair';
  const operates = chair || role === 'operator';
  return { alerts: chair, assign: operates, audit: operates, writes: operates };
}

/** A token as typed or pasted: trimmed; null when empty, too long or with spaces inside. */
export function cleanToken(text) {
  const token = String(text ?? '').trim();
  if (!token || token.length > MAX_TOKEN_LEN || /\s/.test(token)) return null;
  return token;
}

/** The stored session `{token}`, or null. */
export function loadSession(storage = globalThis.sessionStorage) {
  try {
    const s = JSON.parse(storage.getItem(SESSION_KEY) || 'null');
    const token = s && typeof s.token === 'string' ? cleanToken(s.token) : null;
    return token ? { token } : null;
  } catch {
    return null;
  }
}

/** Stores the session for this tab: the token only. */
export function saveSession(session, storage = globalThis.sessionStorage) {
  storage.setItem(SESSION_KEY, JSON.stringify({ token: session.token }));
}

/** Forgets the session. */
export function clearSession(storage = globalThis.sessionStorage) {
  storage.removeItem(SESSION_KEY);
}

/** Leaves a message for the login screen after a reload (why the session ended). */
export function saveNotice(text, storage = globalThis.sessionStorage) {
  storage.setItem(NOTICE_KEY, String(text));
}

/** The message left by {@link saveNotice}, once; null if none. */
export function takeNotice(storage = globalThis.sessionStorage) {
  const text = storage.getItem(NOTICE_KEY);
  storage.removeItem(NOTICE_KEY);
  return text;
}

/**
 * The identity of a `GET /api/v1/me` answer: `{name, role, team?, sites}`.
 * Throws when the answer is not one (a proxy's page, an older server).
 * A role the page does not know is kept, with no tools.
 */
export function parseMe(body) {
  if (!body || typeof body.name !== 'string' || !body.name || typeof body.role !== 'string' || !body.role) {
    throw new Error('the server did not say who this token belongs to');
  }
  const me = { name: body.name, role: body.role, sites: Array.isArray(body.sites) ? body.sites.map(String) : [] };
  if (typeof body.team === 'string') me.team = body.team;
  return me;
}

/** The delay before reconnection attempt `attempt` (0-based): exponential with ±20 % jitter so many pages do not reconnect in step. */
export function backoffMs(attempt, random = Math.random) {
  const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

let counter = 0;

/** A fresh message id (the server deduplicates by it): `dash:{user}:{time}:{n}`. */
export function messageId(user) {
  counter += 1;
  return `dash:${user}:${Date.now().toString(36)}:${counter}`.slice(0, 64);
}

/** The envelope fields every inbound message carries. */
export function envelope(user) {
  return { v: 1, id: messageId(user), ts: new Date().toISOString() };
}

/** An error answered by the server: `{code, field, message}` of the first problem. */
export class RequestError extends Error {
  constructor(status, body) {
    super(body?.message || `http ${status}`);
    this.status = status;
    this.body = body;
    this.code = body?.code;
    this.field = body?.field;
  }
}

/**
 * What to tell the user about a failed call: the server's own message
 * (which names the field and why) for a refusal, the network's for an
 * unreachable server, else the error's own message.
 */
export function errorText(err) {
  // fetch rejects with a TypeError when no answer came at all.
  if (err instanceof TypeError) return t('error.network', { message: err.message });
  if (!(err instanceof RequestError)) return err?.message || String(err);
  const message = err.message;
  const field = err.field ? `${err.field}: ` : '';
  switch (err.status) {
    case 401:
      return t('error.unauthenticated', { message });
    case 403:
      return t('error.forbidden', { field, message });
    case 429:
      return t('error.rateLimited', { message });
    default:
      return t('error.request', { field, message });
  }
}

/** Whether `err` means the token no longer stands (missing, invalid, revoked or rotated): HTTP 401. */
export function isUnauthenticated(err) {
  return err instanceof RequestError && err.status === 401;
}

/** Whether a WebSocket message is the server's refusal of a revoked token. */
export function isUnauthenticatedFrame(msg) {
  return msg?.type === 'error' && (msg.code === 'unauthenticated' || (msg.errors || []).some((e) => e?.code === 'unauthenticated'));
}

/**
 * Calls the API with `token`: `fetchFn(path, init)` is `fetch` (a test
 * passes its own). Resolves with the JSON answer; rejects with a
 * {@link RequestError} carrying the server's `{code, field, message}`.
 */
export async function request(token, method, path, body, fetchFn = (...args) => globalThis.fetch(...args)) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetchFn(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { message: text };
  }
  if (!response.ok) throw new RequestError(response.status, json);
  return json;
}

/**
 * Signs in: asks the server who `token` belongs to. Resolves with
 * `{token, me}`; rejects with the server's refusal (a wrong token's 401
 * says why) or a network error.
 */
export async function signIn(text, fetchFn = undefined) {
  const token = cleanToken(text);
  if (!token) throw new Error(t('login.error.token'));
  const me = parseMe(await request(token, 'GET', '/api/v1/me', undefined, fetchFn));
  return { token, me };
}

/**
 * A REST client for one session `{token, me}`. `onUnauthenticated(err)` is
 * called when any call answers 401 (the token was revoked or rotated
 * since), before the call rejects.
 */
export function client(session, { onUnauthenticated = () => {}, fetchFn = undefined } = {}) {
  async function call(method, path, body) {
    try {
      return await request(session.token, method, path, body, fetchFn);
    } catch (err) {
      if (isUnauthenticated(err)) onUnauthenticated(err);
      throw err;
    }
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, { ...envelope(session.me.name), ...body }),
    postRaw: (path, body) => call('POST', path, body),
  };
}

/**
 * Keeps a WebSocket to `/ws` open: reconnects with exponential backoff and
 * tells `onStatus({state, retryInMs, reason})` (`connecting`, `live`,
 * `lost`; `ended` when the server closed it because the token was revoked
 * or rotated, after which it does not reconnect).
 * `onMessage(json)` gets every frame. Returns `{resync(), close()}`:
 * `resync` replaces the connection at once (a fresh snapshot).
 */
export function connectLive(session, { onMessage, onStatus, location = globalThis.location }) {
  let ws = null;
  let attempt = 0;
  let timer = null;
  let closed = false;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/ws?token=${encodeURIComponent(session.token)}`;

  function open() {
    timer = null;
    onStatus({ state: 'connecting' });
    const socket = new WebSocket(url);
    ws = socket;
    socket.onopen = () => {
      attempt = 0;
      onStatus({ state: 'live' });
    };
    socket.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(msg);
    };
    socket.onclose = (event) => {
      if (ws !== socket || closed) return;
      ws = null;
      if (event.code === CLOSE_POLICY) {
        closed = true;
        onStatus({ state: 'ended', reason: event.reason });
        return;
      }
      const wait = backoffMs(attempt);
      attempt += 1;
      onStatus({ state: 'lost', retryInMs: wait });
      timer = setTimeout(open, wait);
    };
  }

  open();
  return {
    resync() {
      // A fresh connection brings a fresh snapshot; no wait, the server is up.
      const old = ws;
      ws = null;
      if (old) {
        old.onclose = null;
        old.close();
      }
      if (timer) clearTimeout(timer);
      onStatus({ state: 'resync' });
      open();
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (ws) ws.close();
    },
    socket: () => ws,
  };
}
