// The session and `GET /api/v1/me` logic of src/api.js: what is stored,
// how the server's answers become an identity and tools, and how its
// refusals reach the user. The server is a fake `fetch` answering what
// eoc-server answers (status and JSON body).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CLOSE_POLICY,
  ROLES,
  RequestError,
  backoffMs,
  capabilities,
  cleanToken,
  clearSession,
  client,
  errorText,
  isUnauthenticated,
  isUnauthenticatedFrame,
  loadSession,
  parseMe,
  saveNotice,
  saveSession,
  signIn,
  takeNotice,
} from '../src/api.js';
import { setLocale, t } from '../src/i18n.js';
import { AUDIT_LIMIT, auditPath } from '../src/tools.js';

setLocale('en');

/** sessionStorage's interface over a Map. */
function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
    dump: () => Object.fromEntries(m),
  };
}

/** A fake server: `answer(path, init)` returns `[status, body]`; every call is recorded. */
function fakeFetch(answer) {
  const calls = [];
  const fn = async (path, init) => {
    calls.push({ path, init });
    const [status, body] = answer(path, init);
    const text = typeof body === 'string' ? body : body === undefined ? '' : JSON.stringify(body);
    return { ok: status >= 200 && status < 300, status, text: async () => text };
  };
  fn.calls = calls;
  return fn;
}

const TOKEN = 'eoc_abcdefghij12_0123456789abcdefghijABCDEFGHIJ-_0123456789abc';
const ME_CHAIR = { name: 'chair', role: 'chair' };
const UNAUTHENTICATED = (message) => [401, { code: 'unauthenticated', field: 'authorization', message }];

test('the session keeps the token only, and survives nothing malformed', () => {
  const s = memoryStorage();
  assert.equal(loadSession(s), null);
  saveSession({ token: TOKEN, me: ME_CHAIR, role: 'chair', user: 'x' }, s);
  assert.deepEqual(JSON.parse(s.dump()['eoc.session']), { token: TOKEN }, 'no name or role is stored: /me says them');
  assert.deepEqual(loadSession(s), { token: TOKEN });
  clearSession(s);
  assert.equal(loadSession(s), null);

  for (const bad of ['{', '"text"', '{"token":""}', '{"token":42}', '{"user":"chair-1","role":"chair"}', '{"token":"two words"}']) {
    s.setItem('eoc.session', bad);
    assert.equal(loadSession(s), null, bad);
  }
});

test('a token is trimmed; empty, spaced or overlong ones are refused before asking the server', () => {
  assert.equal(cleanToken(`  ${TOKEN}\n`), TOKEN);
  assert.equal(cleanToken(''), null);
  assert.equal(cleanToken('   '), null);
  assert.equal(cleanToken(null), null);
  assert.equal(cleanToken('abc def'), null);
  assert.equal(cleanToken('x'.repeat(513)), null);
});

test('a notice for the login screen is read once', () => {
  const s = memoryStorage();
  assert.equal(takeNotice(s), null);
  saveNotice('You were signed out', s);
  assert.equal(takeNotice(s), 'You were signed out');
  assert.equal(takeNotice(s), null);
});

test('/me becomes an identity; team and sites are kept, a wrong answer is refused', () => {
  assert.deepEqual(parseMe(ME_CHAIR), { name: 'chair', role: 'chair', sites: [] });
  assert.deepEqual(parseMe({ name: 'react-drs-01', role: 'responder', team: 'react-drs-01' }), {
    name: 'react-drs-01',
    role: 'responder',
    team: 'react-drs-01',
    sites: [],
  });
  assert.deepEqual(parseMe({ name: 'm1', role: 'site_manager', sites: ['s-1', 's-2'] }).sites, ['s-1', 's-2']);
  for (const bad of [null, {}, { name: 'x' }, { role: 'chair' }, { name: '', role: 'chair' }, { name: 'x', role: 7 }, '<html>']) {
    assert.throws(() => parseMe(bad), /did not say who/, JSON.stringify(bad));
  }
});

test('tools follow the rule book: chair alerts and assigns, operator assigns, everyone else reads', () => {
  assert.deepEqual(capabilities('chair'), { alerts: true, assign: true, audit: true, writes: true });
  assert.deepEqual(capabilities('operator'), { alerts: false, assign: true, audit: true, writes: true });
  const none = { alerts: false, assign: false, audit: false, writes: false };
  for (const role of ['viewer', 'responder', 'site_manager', 'admin', undefined]) {
    assert.deepEqual(capabilities(role), none, String(role));
  }
});

test('every role the server names has a label for the header and the audit trail', () => {
  assert.deepEqual(ROLES, ['chair', 'operator', 'responder', 'site_manager', 'viewer']);
  for (const role of ROLES) assert.notEqual(t(`role.${role}`), `role.${role}`, role);
});

test('signing in asks /me with the bearer token and nothing else', async () => {
  const fetch = fakeFetch(() => [200, { name: 'operator-1', role: 'operator' }]);
  const session = await signIn(` ${TOKEN} `, fetch);
  assert.deepEqual(session, { token: TOKEN, me: { name: 'operator-1', role: 'operator', sites: [] } });
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].path, '/api/v1/me');
  assert.equal(fetch.calls[0].init.method, 'GET');
  assert.deepEqual(fetch.calls[0].init.headers, { Authorization: `Bearer ${TOKEN}` }, 'no X-EOC-User: identity is the token');
});

test('a wrong token fails with the server\'s message; an empty one never reaches the server', async () => {
  const fetch = fakeFetch(() => UNAUTHENTICATED('the token is not valid'));
  await assert.rejects(signIn(TOKEN, fetch), (err) => {
    assert.ok(err instanceof RequestError);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthenticated');
    assert.equal(err.field, 'authorization');
    assert.equal(err.message, 'the token is not valid');
    assert.ok(isUnauthenticated(err));
    return true;
  });
  await assert.rejects(signIn('   ', fetch), /Paste the access token/);
  assert.equal(fetch.calls.length, 1);
  // Not a JSON answer (a proxy's error page): its text is the message.
  const proxy = fakeFetch(() => [502, 'Bad Gateway']);
  await assert.rejects(signIn(TOKEN, proxy), (err) => err.status === 502 && err.message === 'Bad Gateway' && !isUnauthenticated(err));
});

test('every call sends the token; a write carries an envelope naming the user from /me', async () => {
  const fetch = fakeFetch(() => [200, { id: 'x', seq: 7 }]);
  const api = client({ token: TOKEN, me: { name: 'operator-1', role: 'operator' } }, { fetchFn: fetch });
  await api.get('/api/v1/tasks');
  const ack = await api.post('/api/v1/tasks', { team_id: 'react-drs-01', village_id: 'v-1' });
  assert.deepEqual(ack, { id: 'x', seq: 7 });
  for (const c of fetch.calls) assert.equal(c.init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(fetch.calls[1].init.headers['Content-Type'], 'application/json');
  assert.equal('X-EOC-User' in fetch.calls[1].init.headers, false);
  const body = JSON.parse(fetch.calls[1].init.body);
  assert.equal(body.v, 1);
  assert.match(body.id, /^dash:operator-1:/);
  assert.ok(!Number.isNaN(Date.parse(body.ts)));
  assert.equal(body.team_id, 'react-drs-01');
});

test('a 401 on any later call ends the session; a 403 or 429 does not', async () => {
  let status = [200, {}];
  const fetch = fakeFetch(() => status);
  const ended = [];
  const api = client({ token: TOKEN, me: ME_CHAIR }, { fetchFn: fetch, onUnauthenticated: (err) => ended.push(err.message) });

  status = [403, { code: 'forbidden', field: 'alert_id', message: 'only a chair may issue, update or cancel alert a-1; v is a viewer' }];
  await assert.rejects(api.post('/api/v1/alerts', {}), (err) => err.status === 403 && err.field === 'alert_id');
  status = [429, { code: 'rate_limited', field: '', message: 'chair may send 50 commands per second (100 at once); retry in 20 ms' }];
  await assert.rejects(api.post('/api/v1/alerts', {}), (err) => err.status === 429);
  assert.deepEqual(ended, []);

  status = UNAUTHENTICATED('the token was revoked or rotated');
  await assert.rejects(api.get('/api/v1/audit'), (err) => isUnauthenticated(err));
  assert.deepEqual(ended, ['the token was revoked or rotated']);
});

test('refusals read as the server wrote them, with the field that decided', () => {
  const forbidden = new RequestError(403, { code: 'forbidden', field: 'team_id', message: 'only an operator or chair may assign team t-1; v is a viewer' });
  assert.equal(errorText(forbidden), 'Not allowed: team_id: only an operator or chair may assign team t-1; v is a viewer');
  const audit = new RequestError(403, { code: 'forbidden', field: '', message: 'only operators and chairs read the audit trail' });
  assert.equal(errorText(audit), 'Not allowed: only operators and chairs read the audit trail');
  assert.equal(errorText(new RequestError(429, { code: 'rate_limited', message: 'retry in 20 ms' })), 'Too fast: retry in 20 ms');
  assert.equal(errorText(new RequestError(401, { code: 'unauthenticated', field: 'authorization', message: 'the token was revoked or rotated' })), 'Signed out: the token was revoked or rotated');
  assert.equal(errorText(new RequestError(400, { code: 'invalid', field: 'lat', message: 'lat must be in -90..90' })), 'Refused: lat: lat must be in -90..90');
  assert.equal(errorText(new TypeError('Failed to fetch')), 'The server could not be reached: Failed to fetch');
  assert.equal(errorText(new Error('the server did not say who this token belongs to')), 'the server did not say who this token belongs to');
});

test('the WebSocket\'s signs of a revoked token are recognised', () => {
  assert.equal(CLOSE_POLICY, 1008);
  assert.ok(isUnauthenticatedFrame({ type: 'error', id: 'm-1', errors: [{ code: 'unauthenticated', field: 'authorization', message: 'the token was revoked or rotated' }] }));
  assert.ok(isUnauthenticatedFrame({ type: 'error', code: 'unauthenticated' }));
  assert.ok(!isUnauthenticatedFrame({ type: 'error', errors: [{ code: 'forbidden' }] }));
  assert.ok(!isUnauthenticatedFrame({ type: 'snapshot' }));
  assert.ok(!isUnauthenticatedFrame(null));
});

test('the audit panel asks for recent refusals by default', () => {
  assert.equal(auditPath(), `/api/v1/audit?outcome=refused&limit=${AUDIT_LIMIT}`);
  assert.equal(AUDIT_LIMIT, 50);
  assert.equal(auditPath('rejected', 10), '/api/v1/audit?outcome=rejected&limit=10');
  assert.equal(auditPath('all'), '/api/v1/audit?limit=50');
});

test('reconnection backs off exponentially to a cap, with jitter', () => {
  assert.equal(backoffMs(0, () => 0.5), 500);
  assert.equal(backoffMs(3, () => 0.5), 4000);
  assert.equal(backoffMs(30, () => 0.5), 15_000);
  assert.equal(backoffMs(0, () => 0), 400);
  assert.equal(backoffMs(0, () => 1), 600);
});
