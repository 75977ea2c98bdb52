// Wires the page together: login, the live connection, the store, the map,
// the boards and the role's tools.
//
// Rendering is batched: WebSocket messages only update the store (cheap)
// and ask for one animation frame; that frame applies everything that
// changed to the map at once. Boards are rebuilt at most every
// BOARD_EVERY_MS, since a table of 1,000 teams cannot be rebuilt 60 times
// a second and nobody reads it that fast.

import {
  CLOSE_POLICY,
  capabilities,
  cleanToken,
  clearSession,
  client,
  connectLive,
  errorText,
  isUnauthenticated,
  isUnauthenticatedFrame,
  loadSession,
  saveNotice,
  saveSession,
  signIn,
  takeNotice,
} from './api.js';
import { renderAlerts, renderEvents, renderImpact, renderSites, renderTasks, renderTeams, h } from './boards.js';
import { INTENSITY_STEPS, SITE_COLORS, TEAM_COLORS, TEAM_SHAPES } from './format.js';
import { t } from './i18n.js';
import { createMap } from './map.js';
import { applyMessage, createStore, takeChanges } from './state.js';
import { createAuditPanel, createChairPanel, createOperatorPanel } from './tools.js';

/** Boards are rebuilt at most this often. */
export const BOARD_EVERY_MS = 300;

/** The teams board (and the operator's team list) at most this often: with 1,000 teams moving it changes every frame. */
export const TEAM_BOARD_EVERY_MS = 1_000;

/** Team markers are restyled this often so stale positions show without an update. */
export const AGE_REFRESH_MS = 5_000;

/** Bounding box of every village fetched for the map (Tajikistan with a margin). */
const COUNTRY_BBOX = '66.5,36.0,75.5,41.5';

const $ = (sel) => document.querySelector(sel);

/**
 * The login screen: the token only (who it belongs to, and so the role,
 * is the server's answer). `notice` says why the last session ended;
 * `token` prefills the field (a retry after the server was unreachable).
 */
function showLogin({ notice = null, token = '' } = {}) {
  document.body.dataset.view = 'login';
  const input = h('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, maxlength: 512, spellcheck: 'false' });
  input.value = token;
  const submit = h('button', { type: 'submit', class: 'primary' }, t('login.submit'));
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' }, notice || '');
  const form = h(
    'form',
    {
      class: 'login',
      onsubmit: async (e) => {
        e.preventDefault();
        const text = cleanToken(input.value);
        if (!text) {
          error.textContent = t('login.error.token');
          return;
        }
        submit.disabled = true;
        error.textContent = t('login.checking');
        try {
          const session = await signIn(text);
          saveSession(session);
          start(session);
        } catch (err) {
          error.textContent = err.status ? t('login.refused', { message: err.message }) : errorText(err);
          submit.disabled = false;
          input.focus();
        }
      },
    },
    h('h1', {}, t('login.title')),
    h('label', { for: 'login-token' }, t('login.token')),
    input,
    submit,
    error,
    h('p', { class: 'muted' }, t('login.note')),
  );
  $('#login').replaceChildren(form);
  input.focus();
}

let ending = false;

/**
 * Ends the session because the server no longer accepts its token
 * (revoked, rotated, or the user removed): forgets the token and returns
 * to the login screen, saying why.
 */
function endSession(message) {
  if (ending) return;
  ending = true;
  clearSession();
  saveNotice(t('login.ended', { message }));
  // A reload drops the live connection, the map and every timer at once.
  location.reload();
}

function legend() {
  const swatch = (color) => h('span', { class: 'swatch', style: `background:${color}` });
  return h(
    'details',
    { class: 'legend', open: window.innerWidth > 1600 },
    h('summary', {}, t('legend.title')),
    h('div', {}, h('strong', {}, t('legend.intensity')), h('ul', {}, INTENSITY_STEPS.map((s) => h('li', {}, swatch(s.color), ` ${s.label}`)), h('li', {}, swatch('#bdbdbd'), ` ${t('legend.unaffected')}`))),
    h('div', {}, h('strong', {}, t('legend.sites')), h('ul', {}, Object.entries(SITE_COLORS).map(([level, c]) => h('li', {}, swatch(c), ` ${t(`sites.level.${level}`)}`)))),
    h('div', {}, h('strong', {}, t('legend.teams')), h('ul', {}, Object.entries(TEAM_SHAPES).map(([status, shape]) => h('li', {}, h('span', { class: `shape shape-${shape}`, style: `color:${TEAM_COLORS[status]}` }), ` ${t(`status.${status}`)}`)))),
    h('p', { class: 'muted' }, t('legend.stale'), h('br'), t('legend.lowBattery'), h('br'), t('legend.exercise')),
  );
}

/** The signed-in page for `session` `{token, me}`: tools by role from `me`. */
async function start(session) {
  const { me } = session;
  const can = capabilities(me.role);
  document.body.dataset.view = 'app';
  document.body.dataset.role = me.role;
  const api = client(session, { onUnauthenticated: (err) => endSession(err.message) });
  const store = createStore();
  const ui = { siteSort: 'free', siteFilter: '' };

  const roleName = t(`role.${me.role}`) === `role.${me.role}` ? me.role : t(`role.${me.role}`);
  $('#who').textContent = t('header.signedInAs', { user: me.name, role: can.writes ? roleName : `${roleName}, ${t('header.readOnly')}` });
  $('#sign-out').addEventListener('click', () => {
    clearSession();
    location.reload();
  });

  let chair = null;
  let operator = null;
  const map = createMap($('#map'), {
    onMapClick: (latlng) => chair?.mapClick(latlng),
    onVillage: (v) => {
      if (chair) chair.mapClick({ lat: v.lat, lng: v.lon });
      if (operator) {
        const exposure = [...store.impacts.values()].find((i) => store.alerts.get(i.alert_id)?.active && i.villages.some((x) => x.village_id === v.village_id));
        operator.selectVillage(v, exposure?.alert_id);
      }
    },
    onTeam: () => {},
    onSite: () => {},
  });
  $('#map-legend').replaceChildren(legend());

  // Tools by role, as the server's rule book allows them: a chair issues
  // alerts and assigns, an operator assigns, everyone else reads.
  const tools = $('#tools');
  if (can.alerts) chair = createChairPanel(tools.appendChild(h('div', { class: 'tool' })), { api, store, map });
  if (can.assign) operator = createOperatorPanel(tools.appendChild(h('div', { class: 'tool' })), { api, store, map });
  tools.hidden = !can.writes;
  const audit = can.audit ? createAuditPanel($('#audit'), { api }) : null;

  // Site board controls.
  const sortButtons = [['free', 'sites.sortFree'], ['updated', 'sites.sortUpdated'], ['name', 'sites.sortName']].map(([key, label]) =>
    h('button', { type: 'button', 'aria-pressed': String(key === ui.siteSort), dataset: { sort: key }, onclick: () => {
      ui.siteSort = key;
      for (const b of sortButtons) b.setAttribute('aria-pressed', String(b.dataset.sort === key));
      dirty.sites = true;
      schedule();
    } }, t(label)),
  );
  const filter = h('input', { type: 'search', id: 'site-filter', placeholder: t('board.filter'), 'aria-label': t('board.filter'), oninput: (e) => {
    ui.siteFilter = e.target.value;
    dirty.sites = true;
    schedule();
  } });
  $('#sites-controls').replaceChildren(...sortButtons, filter);

  try {
    const settings = await api.get('/api/v1/dashboard').catch(() => null);
    await map.loadBoundaries((path) => api.get(path), settings);
    const { villages } = await api.get(`/api/v1/villages?bbox=${COUNTRY_BBOX}`);
    map.setVillages(villages);
  } catch (err) {
    console.error('static layers not loaded', err);
  }

  // ---- live updates, batched per animation frame -------------------------
  let frameRequested = false;
  // Which boards need rebuilding, and when each was last built.
  const dirty = { alerts: true, impact: true, sites: true, teams: true, tasks: true, events: true };
  const builtAt = {};
  let boardTimer = null;

  function schedule() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(frame);
  }

  function markDirty(changes) {
    if (changes.all) {
      for (const k of Object.keys(dirty)) dirty[k] = true;
      return;
    }
    if (changes.alerts.size || changes.impacts.size) Object.assign(dirty, { alerts: true, impact: true, tasks: true });
    if (changes.sites.size) dirty.sites = true;
    if (changes.teams.size) dirty.teams = true;
    if (changes.tasks.size) Object.assign(dirty, { tasks: true, teams: true });
    if (changes.events) dirty.events = true;
  }

  function frame() {
    frameRequested = false;
    const t0 = performance.now();
    const nowMs = Date.now();
    const changes = takeChanges(store);
    const any = changes.all || changes.alerts.size || changes.impacts.size || changes.sites.size || changes.teams.size || changes.tasks.size || changes.events;
    if (any) {
      map.update(store, changes, nowMs);
      map.flush();
      markDirty(changes);
    }
    renderBoards(nowMs);
    perf.record(performance.now() - t0);
  }

  function placeName(task) {
    if (task.village_id) return map.village(task.village_id)?.name || task.village_id;
    return store.sites.get(task.site_id)?.name || task.site_id;
  }

  // Each board is rebuilt when its data changed, at most every
  // BOARD_EVERY_MS (the teams board, which 1,000 moving teams change all
  // the time, every TEAM_BOARD_EVERY_MS); a timer catches up what waited.
  function due(board, nowPerf) {
    const every = board === 'teams' ? TEAM_BOARD_EVERY_MS : BOARD_EVERY_MS;
    const wait = (builtAt[board] ?? -Infinity) + every - nowPerf;
    if (wait <= 0) {
      dirty[board] = false;
      builtAt[board] = nowPerf;
      return true;
    }
    if (!boardTimer) {
      boardTimer = setTimeout(() => {
        boardTimer = null;
        schedule();
      }, wait);
    }
    return false;
  }

  function renderBoards(nowMs) {
    const p = performance.now();
    if (dirty.alerts && due('alerts', p)) {
      renderAlerts($('#board-alerts'), store, { canAlert: can.alerts, onEdit: (a) => chair?.edit(a), onCancel: (a) => chair?.cancel(a) });
      const exercise = [...store.alerts.values()].find((a) => a.active && a.status !== 'actual');
      const banner = $('#exercise-banner');
      banner.hidden = !exercise;
      banner.textContent = exercise ? t('banner.exercise', { headline: exercise.headline || exercise.alert_id }) : '';
    }
    if (dirty.impact && due('impact', p)) {
      renderImpact($('#board-impact'), store, {
        onVillage: (v, alert) => {
          map.focus(v.location[1], v.location[0], 9);
          operator?.selectVillage(v, alert.alert_id);
        },
      });
    }
    if (dirty.sites && due('sites', p)) {
      renderSites($('#board-sites'), store, { sortKey: ui.siteSort, filter: ui.siteFilter, nowMs, onSite: (s) => map.focus(s.lat, s.lon, 11) });
    }
    if (dirty.teams && due('teams', p)) {
      renderTeams($('#board-teams'), store, { nowMs, onTeam: (tm) => map.focus(tm.lat, tm.lon, 10) });
      operator?.refresh();
    }
    if (dirty.tasks && due('tasks', p)) {
      renderTasks($('#board-tasks'), store, { canAssign: can.assign, placeName, onAccept: (task) => operator?.accept(task), onReassign: (task) => operator?.selectTask(task) });
    }
    if (dirty.events && due('events', p)) renderEvents($('#board-events'), store);
    $('#seq').textContent = store.seq === null ? '' : t('header.seq', { seq: store.seq });
  }

  const banner = $('#conn-banner');
  let countdown = null;
  function onMessage(msg) {
    if (isUnauthenticatedFrame(msg)) {
      endSession(msg.errors?.[0]?.message || msg.message || 'unauthenticated');
      return;
    }
    perf.arrived();
    const result = applyMessage(store, msg);
    if (result === 'resync') live.resync();
    schedule();
  }
  const live = connectLive(session, {
    onMessage,
    onStatus(status) {
      document.body.dataset.conn = status.state;
      clearInterval(countdown);
      if (status.state === 'ended') {
        // The server closed the connection because the token no longer stands.
        endSession(status.reason || t('error.unauthenticated', { message: `close ${CLOSE_POLICY}` }));
      } else if (status.state === 'live') {
        banner.hidden = true;
      } else if (status.state === 'lost') {
        // A WebSocket refused at the handshake only says "closed"; ask the
        // API whether the token still stands (a 401 ends the session, any
        // other failure is the server being away).
        api.get('/api/v1/me').catch(() => {});
        banner.hidden = false;
        const until = Date.now() + status.retryInMs;
        const tick = () => {
          banner.textContent = t('conn.lost', { seconds: Math.max(0, Math.ceil((until - Date.now()) / 1000)) });
        };
        tick();
        countdown = setInterval(tick, 500);
      } else if (status.state === 'resync') {
        banner.hidden = false;
        banner.textContent = t('conn.resync');
      } else {
        banner.hidden = false;
        banner.textContent = t('conn.connecting');
      }
    },
  });

  setInterval(() => {
    map.refreshAges(store, Date.now());
    Object.assign(dirty, { teams: true, sites: true });
    schedule();
  }, AGE_REFRESH_MS);

  // Test and debugging hook; the page itself never reads it. `inject`
  // feeds a message through the same path as the WebSocket (the
  // performance test uses it for synthetic load).
  window.__eoc = { store, map, live, inspect: () => map.inspect(), perf, inject: onMessage, me, api, audit };
}

/** Most samples kept by the recorder below. */
const PERF_SAMPLES = 10_000;

/**
 * Frame-time and latency recorder, what the performance test reads: the
 * work of each batched frame (ms), and for each message the time from its
 * arrival to the end of the frame that drew it.
 */
const perf = {
  samples: [],
  latencies: [],
  pending: [],
  arrived() {
    if (this.pending.length < PERF_SAMPLES) this.pending.push(performance.now());
  },
  record(ms) {
    const end = performance.now();
    this.samples.push(ms);
    for (const at of this.pending) this.latencies.push(end - at);
    this.pending = [];
    if (this.samples.length > PERF_SAMPLES) this.samples.splice(0, this.samples.length - PERF_SAMPLES);
    if (this.latencies.length > PERF_SAMPLES) this.latencies.splice(0, this.latencies.length - PERF_SAMPLES);
  },
  reset() {
    this.samples = [];
    this.latencies = [];
    this.pending = [];
  },
};

/**
 * Opens the page: with a stored token, asks the server who it belongs to
 * and starts; a token the server refuses (revoked or rotated while the tab
 * was closed or reloading) returns to the login screen with the server's
 * reason, and an unreachable server leaves the token in the form to retry.
 */
async function open() {
  const notice = takeNotice();
  const stored = loadSession();
  if (!stored) {
    showLogin({ notice });
    return;
  }
  try {
    start(await signIn(stored.token));
  } catch (err) {
    if (isUnauthenticated(err)) {
      clearSession();
      showLogin({ notice: t('login.ended', { message: err.message }) });
    } else {
      showLogin({ notice: t('login.unreachable', { message: err.message }), token: stored.token });
    }
  }
}

document.title = t('app.title');
for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
open();
