// The page's link to eoc-server: the session (login), REST calls and the
// WebSocket with reconnection.
//
// Identity, honestly: access control is a later piece of work. Today the
// server takes who you are from the `X-EOC-User` header and checks no
// token. The login screen already asks for a token, keeps it in
// sessionStorage (gone when the tab closes) and sends it as
// `Authorization: Bearer …` and on the WebSocket URL as `?token=`, so it
// works unchanged once tokens are checked; until then any token is
// accepted, and the role picked at login only decides which tools the page
// shows — the server does not enforce it.

const SESSION_KEY = 'eoc.session';

/** Roles the page knows, in order of power. */
export const ROLES = ['chair', 'operator', 'viewer'];

/** First reconnection delay; doubled after each failure up to {@link MAX_BACKOFF_MS}. */
export const MIN_BACKOFF_MS = 500;

/** Longest wait between reconnection attempts, so a restarted server is found within this. */
export const MAX_BACKOFF_MS = 15_000;

const USER_PATTERN = /^[A-Za-z0-9._:@-]{1,64}$/;

/** Whether a user name is one the server accepts in `X-EOC-User`. */
export function validUser(user) {
  return USER_PATTERN.test(user);
}

/** The signed-in session `{user, token, role}`, or null. */
export function loadSession(storage = globalThis.sessionStorage) {
  try {
    const s = JSON.parse(storage.getItem(SESSION_KEY) || 'null');
    return s && validUser(s.user) && ROLES.includes(s.role) ? s : null;
  } catch {
    return null;
  }
}

/** Stores the session for this tab. */
export function saveSession(session, storage = globalThis.sessionStorage) {
  storage.setItem(SESSION_KEY, JSON.stringify(session));
}

/** Forgets the session. */
export function clearSession(storage = globalThis.sessionStorage) {
  storage.removeItem(SESSION_KEY);
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
  }
}

/** A REST client for one session. */
export function client(session) {
  const headers = {
    Authorization: `Bearer ${session.token}`,
    'X-EOC-User': session.user,
  };
  async function call(method, path, body) {
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
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
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, { ...envelope(session.user), ...body }),
    postRaw: (path, body) => call('POST', path, body),
  };
}

/**
 * Keeps a WebSocket to `/ws` open: reconnects with exponential backoff and
 * tells `onStatus({state, retryInMs})` (`connecting`, `live`, `lost`).
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
    socket.onclose = () => {
      if (ws !== socket || closed) return;
      ws = null;
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
