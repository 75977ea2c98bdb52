// The chair's alert tools, the assignment panel (operators and chairs) and
// the audit trail (operators and chairs). The tools build protocol messages
// (eoc-protocol/PROTOCOL.md) from form fields and post them; the live state
// then arrives over the WebSocket like any change. The server checks every
// write again: a refusal is shown as its own message.

import { errorText } from './api.js';
import { h, renderAudit } from './boards.js';
import { formatDistance, formatNumber } from './format.js';
import { t } from './i18n.js';
import { teamsFor } from './state.js';

/** How many teams the operator's list offers for one destination. */
export const TEAMS_OFFERED = 12;

const HAZARDS = ['earthquake', 'flood', 'mudslide', 'avalanche', 'other'];
const STATUSES = ['actual', 'exercise', 'test'];
const SEVERITIES = ['severe', 'extreme', 'moderate', 'minor', 'unknown'];

function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

function select(name, values, labelOf = (v) => v) {
  return h('select', { name }, values.map((v) => h('option', { value: v }, labelOf(v))));
}

/** A fresh alert id: `{hazard}-{yyyymmdd}-{hhmmss}`. */
export function newAlertId(hazard, now = new Date()) {
  const iso = now.toISOString().replace(/[-:]/g, '');
  return `${hazard}-${iso.slice(0, 8)}-${iso.slice(9, 15)}`;
}

/**
 * Builds the alert message body from the chair's draft, or throws an
 * Error whose message says what is missing.
 */
export function alertBody(d) {
  const body = {
    alert_id: d.alertId,
    status: d.status,
    hazard: d.hazard,
    severity: d.severity,
    urgency: 'immediate',
    certainty: d.status === 'actual' ? 'observed' : 'possible',
  };
  if (d.headline) body.headline = d.headline;
  if (d.mode === 'epicentre') {
    if (!Number.isFinite(d.lat) || !Number.isFinite(d.lon)) throw new Error(t('chair.clickMap'));
    body.earthquake = { lat: d.lat, lon: d.lon, magnitude: d.magnitude };
    if (Number.isFinite(d.depthKm)) body.earthquake.depth_km = d.depthKm;
  } else if (d.mode === 'circle') {
    if (!Number.isFinite(d.lat) || !Number.isFinite(d.lon)) throw new Error(t('chair.clickMap'));
    body.area = { type: 'Circle', lat: d.lat, lon: d.lon, radius_m: d.radiusKm * 1000 };
  } else {
    if (d.vertices.length < 3) throw new Error(t('chair.vertices', { count: d.vertices.length }));
    const ring = d.vertices.map(([lat, lon]) => [round6(lon), round6(lat)]);
    ring.push(ring[0]);
    body.area = { type: 'Polygon', coordinates: [ring] };
  }
  return body;
}

function round6(x) {
  return Math.round(x * 1e6) / 1e6;
}

/**
 * The chair's panel: hazard, geometry (epicentre, circle or polygon set by
 * clicking the map), preview, save as draft, issue, update and cancel.
 * `ctx` gives `{api, store, map, notify}`.
 */
export function createChairPanel(root, ctx) {
  const draft = { mode: 'epicentre', vertices: [], editing: null, preview: null };
  const els = {
    alertId: h('input', { name: 'alert_id', required: true, maxlength: 64, pattern: '[A-Za-z0-9._:\\-]{1,64}' }),
    hazard: select('hazard', HAZARDS),
    mode: select('mode', ['epicentre', 'circle', 'polygon'], (m) => t(`chair.mode.${m}`)),
    lat: h('input', { name: 'lat', type: 'number', step: 'any', min: -90, max: 90 }),
    lon: h('input', { name: 'lon', type: 'number', step: 'any', min: -180, max: 180 }),
    depth: h('input', { name: 'depth_km', type: 'number', step: 'any', min: 0, max: 700, value: 15 }),
    magnitude: h('input', { name: 'magnitude', type: 'number', step: '0.1', min: 0, max: 10, value: 6.5 }),
    radius: h('input', { name: 'radius_km', type: 'number', step: 'any', min: 0.1, max: 1000, value: 10 }),
    vertices: h('span', { class: 'muted', 'aria-live': 'polite' }),
    status: select('status', STATUSES),
    severity: select('severity', SEVERITIES),
    headline: h('input', { name: 'headline', maxlength: 256 }),
    result: h('div', { class: 'result', role: 'status', 'aria-live': 'polite' }),
    editing: h('p', { class: 'muted' }),
  };
  els.hazard.addEventListener('change', () => {
    els.mode.value = els.hazard.value === 'earthquake' ? 'epicentre' : els.mode.value === 'epicentre' ? 'circle' : els.mode.value;
    sync();
    if (!draft.editing) els.alertId.value = newAlertId(els.hazard.value);
  });
  els.mode.addEventListener('change', sync);
  for (const input of [els.lat, els.lon, els.radius]) input.addEventListener('input', () => showDraft());

  const quakeFields = h('div', { class: 'row' }, field(t('chair.magnitude'), els.magnitude), field(t('chair.depth'), els.depth));
  const circleFields = h('div', { class: 'row' }, field(t('chair.radius'), els.radius));
  const pointFields = h('div', { class: 'row' }, field(t('chair.lat'), els.lat), field(t('chair.lon'), els.lon));
  const polygonFields = h('div', { class: 'row' }, els.vertices, h('button', { type: 'button', onclick: () => { draft.vertices = []; sync(); } }, t('chair.clearPolygon')));

  const form = h(
    'form',
    { class: 'chair', onsubmit: (e) => e.preventDefault() },
    h('h2', {}, t('chair.title')),
    els.editing,
    h('div', { class: 'row' }, field(t('chair.hazard'), els.hazard), field(t('chair.geometry'), els.mode)),
    pointFields,
    quakeFields,
    circleFields,
    polygonFields,
    h('div', { class: 'row' }, field(t('chair.status'), els.status), field(t('chair.severity'), els.severity)),
    field(t('chair.headline'), els.headline),
    field(t('chair.alertId'), els.alertId),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', name: 'preview', onclick: preview }, t('chair.preview')),
      h('button', { type: 'button', name: 'draft', onclick: () => send('draft') }, t('chair.saveDraft')),
      h('button', { type: 'button', name: 'issue', class: 'primary', onclick: () => send(null) }, t('chair.issue')),
      h('button', { type: 'button', name: 'new', onclick: reset }, t('chair.new')),
    ),
    els.result,
  );
  root.replaceChildren(form);
  reset();

  function sync() {
    const mode = els.mode.value;
    const quake = els.hazard.value === 'earthquake';
    if (quake) els.mode.value = 'epicentre';
    pointFields.hidden = els.mode.value === 'polygon';
    quakeFields.hidden = els.mode.value !== 'epicentre';
    circleFields.hidden = els.mode.value !== 'circle';
    polygonFields.hidden = els.mode.value !== 'polygon';
    for (const opt of els.mode.options) opt.disabled = quake ? opt.value !== 'epicentre' : opt.value === 'epicentre';
    draft.mode = els.mode.value;
    els.vertices.textContent = t('chair.vertices', { count: draft.vertices.length });
    showDraft();
    return mode;
  }

  function read() {
    return {
      alertId: els.alertId.value.trim(),
      hazard: els.hazard.value,
      mode: els.mode.value,
      lat: els.lat.value === '' ? NaN : Number(els.lat.value),
      lon: els.lon.value === '' ? NaN : Number(els.lon.value),
      depthKm: els.depth.value === '' ? NaN : Number(els.depth.value),
      magnitude: Number(els.magnitude.value),
      radiusKm: Number(els.radius.value),
      vertices: draft.vertices,
      status: els.status.value,
      severity: els.severity.value,
      headline: els.headline.value.trim(),
    };
  }

  function showDraft() {
    const d = read();
    const point = Number.isFinite(d.lat) && Number.isFinite(d.lon) ? [d.lat, d.lon] : null;
    ctx.map.showDraft({
      epicentre: d.mode === 'epicentre' ? point : null,
      circle: d.mode === 'circle' && point ? { center: point, radius_m: d.radiusKm * 1000 } : null,
      vertices: d.mode === 'polygon' ? draft.vertices : [],
      preview: draft.preview?.villages,
    });
  }

  function reset() {
    draft.editing = null;
    draft.preview = null;
    draft.vertices = [];
    els.editing.textContent = '';
    els.alertId.disabled = false;
    els.alertId.value = newAlertId(els.hazard.value);
    els.result.textContent = '';
    sync();
  }

  async function preview() {
    let body;
    try {
      body = alertBody(read());
    } catch (err) {
      els.result.textContent = err.message;
      return;
    }
    try {
      const impact = await ctx.api.post('/api/v1/alerts/preview', { ...body, alert_id: `preview-${Date.now().toString(36)}`, status: 'draft' });
      draft.preview = impact;
      const total = impact.summary?.total || {};
      els.result.replaceChildren(
        h('strong', {}, t('chair.previewResult', {
          summary: t('impact.summary', {
            villages: formatNumber(total.villages ?? impact.villages.length),
            people: formatNumber(total.people),
            displaced: formatNumber(total.displaced),
            shortfall: formatNumber(total.shortfall),
          }),
        })),
      );
      els.result.dataset.preview = String(impact.villages.length);
      showDraft();
    } catch (err) {
      els.result.textContent = errorText(err);
    }
  }

  async function send(forceStatus) {
    let body;
    try {
      body = alertBody(read());
    } catch (err) {
      els.result.textContent = err.message;
      return;
    }
    if (forceStatus) body.status = forceStatus;
    try {
      const path = draft.editing ? `/api/v1/alerts/${encodeURIComponent(body.alert_id)}/update` : '/api/v1/alerts';
      if (!draft.editing) body.msg_type = 'alert';
      const ack = await ctx.api.post(path, body);
      els.result.textContent = t('chair.issued', { id: body.alert_id, seq: ack.seq ?? '—' });
      // Further changes to this alert are updates.
      draft.editing = body.alert_id;
      draft.preview = null;
      els.editing.textContent = t('chair.editing', { id: body.alert_id });
      els.alertId.disabled = true;
      showDraft();
    } catch (err) {
      els.result.textContent = errorText(err);
    }
  }

  return {
    /** A click on the map sets the epicentre or centre, or adds a polygon corner. */
    mapClick(latlng) {
      if (els.mode.value === 'polygon') {
        draft.vertices.push([round6(latlng.lat), round6(latlng.lng)]);
      } else {
        els.lat.value = String(round6(latlng.lat));
        els.lon.value = String(round6(latlng.lng));
      }
      sync();
    },
    /** Loads an existing alert into the form for an update. */
    edit(alert) {
      draft.editing = alert.alert_id;
      draft.preview = null;
      els.alertId.value = alert.alert_id;
      els.alertId.disabled = true;
      els.editing.textContent = t('chair.editing', { id: alert.alert_id });
      els.hazard.value = alert.hazard;
      els.status.value = STATUSES.includes(alert.status) ? alert.status : 'actual';
      els.severity.value = alert.severity;
      els.headline.value = alert.headline || '';
      draft.vertices = [];
      if (alert.earthquake) {
        els.mode.value = 'epicentre';
        els.lat.value = alert.earthquake.lat;
        els.lon.value = alert.earthquake.lon;
        els.magnitude.value = alert.earthquake.magnitude;
        els.depth.value = alert.earthquake.depth_km ?? '';
      } else if (alert.area?.type === 'Circle') {
        els.mode.value = 'circle';
        els.lat.value = alert.area.lat;
        els.lon.value = alert.area.lon;
        els.radius.value = alert.area.radius_m / 1000;
      } else if (alert.area?.type === 'Polygon') {
        els.mode.value = 'polygon';
        draft.vertices = alert.area.coordinates[0].slice(0, -1).map(([lon, lat]) => [lat, lon]);
      }
      sync();
      els.headline.focus();
    },
    /** Cancels an alert. */
    async cancel(alert) {
      try {
        await ctx.api.post(`/api/v1/alerts/${encodeURIComponent(alert.alert_id)}/cancel`, { msg_type: 'cancel' });
        els.result.textContent = t('chair.cancelled', { id: alert.alert_id });
        if (draft.editing === alert.alert_id) reset();
      } catch (err) {
        els.result.textContent = errorText(err);
      }
    },
  };
}

/**
 * The assignment panel (operators and chairs): a destination (village or
 * task) and the teams to send, best first; one click assigns
 * (`POST /api/v1/tasks`), and accepting an engine proposal is the same
 * assignment.
 */
export function createOperatorPanel(root, ctx) {
  let target = null; // {village_id?, site_id?, alert_id?, name, lat, lon}
  const result = h('div', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const list = h('div', { class: 'offer' });

  function render() {
    if (!target) {
      list.replaceChildren(h('p', { class: 'muted' }, t('operator.pick')));
      return;
    }
    const offered = teamsFor(ctx.store, target.lat, target.lon).slice(0, TEAMS_OFFERED);
    list.replaceChildren(
      h('h3', {}, t('operator.destination', { name: target.name })),
      h(
        'ol',
        { class: 'teams-offered' },
        offered.map(({ team, distance_m, busy }) =>
          h(
            'li',
            { dataset: { teamId: team.team_id } },
            h('button', { type: 'button', class: 'primary', dataset: { assign: team.team_id }, onclick: () => assign(team) }, `${t('operator.assign')} ${team.team_id}`),
            ` ${t(`status.${team.status}`)} · ${t('operator.distance', { distance: formatDistance(distance_m) })}`,
            busy ? h('span', { class: 'badge warn' }, t('operator.busy', { task: team.task_id })) : null,
          ),
        ),
      ),
    );
  }

  async function assign(team) {
    const body = { team_id: team.team_id };
    if (target.village_id) body.village_id = target.village_id;
    else body.site_id = target.site_id;
    if (target.alert_id) body.alert_id = target.alert_id;
    if (target.skill) body.skill = target.skill;
    try {
      await ctx.api.post('/api/v1/tasks', body);
      result.textContent = t('operator.assigned', { team: team.team_id });
    } catch (err) {
      result.textContent = errorText(err);
    }
  }

  root.replaceChildren(h('section', { class: 'operator' }, h('h2', {}, t('operator.title')), list, result));
  render();

  return {
    /** Offers teams for a village (of an alert, if any). */
    selectVillage(v, alertId) {
      target = { village_id: v.village_id, alert_id: alertId, name: v.name, lat: v.lat ?? v.location[1], lon: v.lon ?? v.location[0] };
      render();
      root.querySelector('button')?.focus();
    },
    /** Offers teams for a task's destination, to reassign it. */
    selectTask(task) {
      const name = task.village_id || task.site_id;
      target = { village_id: task.village_id, site_id: task.village_id ? undefined : task.site_id, alert_id: task.alert_id, skill: task.skill, name, lat: task.destination[1], lon: task.destination[0] };
      render();
      root.querySelector('button')?.focus();
    },
    /** Accepts the engine's proposal as it stands. */
    accept: (task) => {
      target = { village_id: task.village_id, site_id: task.village_id ? undefined : task.site_id, alert_id: task.alert_id, skill: task.skill, name: task.village_id || task.site_id, lat: task.destination[1], lon: task.destination[0] };
      return assign(ctx.store.teams.get(task.team_id) || { team_id: task.team_id });
    },
    refresh: render,
  };
}

/** Entries the audit panel asks for. */
export const AUDIT_LIMIT = 50;

/** The audit panel refreshes itself this often while the tab is visible. */
export const AUDIT_EVERY_MS = 30_000;

/** Outcomes the audit panel can show; `all` sends no filter. */
export const AUDIT_OUTCOMES = ['refused', 'rejected', 'all'];

/** The audit query for `outcome` (one of {@link AUDIT_OUTCOMES}): newest first, at most `limit`. */
export function auditPath(outcome = 'refused', limit = AUDIT_LIMIT) {
  const q = new URLSearchParams();
  if (outcome && outcome !== 'all') q.set('outcome', outcome);
  q.set('limit', String(limit));
  return `/api/v1/audit?${q}`;
}

/**
 * The audit panel (operators and chairs): recent refusals by default
 * (who tried what, and the server's reason), or rejections, or
 * everything; refreshed on demand and every {@link AUDIT_EVERY_MS}.
 * `ctx` gives `{api}`.
 */
export function createAuditPanel(root, ctx) {
  const outcome = select('outcome', AUDIT_OUTCOMES, (o) => t(`audit.outcome.${o}`));
  const board = h('div', { id: 'board-audit' });
  const status = h('p', { class: 'muted', role: 'status' });
  outcome.addEventListener('change', () => refresh());
  root.replaceChildren(
    h('h2', {}, t('audit.title')),
    h(
      'div',
      { class: 'controls' },
      h('label', {}, `${t('audit.outcome')} `, outcome),
      h('button', { type: 'button', name: 'refresh-audit', onclick: () => refresh() }, t('audit.refresh')),
    ),
    board,
    status,
  );
  root.hidden = false;

  // One request at a time; a click during one waits for it.
  let loading = null;
  function refresh() {
    if (loading) return loading;
    loading = ctx.api
      .get(auditPath(outcome.value))
      .then((answer) => {
        renderAudit(board, answer);
        status.textContent = t('audit.updated', { time: new Date().toLocaleTimeString([], { hourCycle: 'h23' }) });
        root.dataset.loaded = String(Number(root.dataset.loaded || 0) + 1);
      })
      .catch((err) => {
        status.textContent = errorText(err);
      })
      .finally(() => {
        loading = null;
      });
    return loading;
  }

  refresh();
  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, AUDIT_EVERY_MS);
  return { refresh, stop: () => clearInterval(timer) };
}
