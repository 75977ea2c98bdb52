// The boards beside the map: active alerts, impact by district, sites,
// teams, tasks and the event log. Built with DOM calls and textContent
// only (server text is never parsed as HTML). Long lists are cut to a
// screenful, with a "showing N of M" line, so a board costs the same with
// 1,000 teams as with 10.

import { formatDistance, formatNumber, formatSince, intensityBand } from './format.js';
import { t } from './i18n.js';
import { activeAlerts, siteGauge, sortedSites, sortedTeams, teamFlags } from './state.js';

/** Most rows a list board shows at once. */
export const MAX_ROWS = 150;

/** Creates an element: `h('td', {class: 'x'}, 'text', child)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function showing(shown, total) {
  return total > shown ? h('p', { class: 'muted' }, t('board.showing', { shown, total })) : null;
}

/** Active alerts, with edit and cancel buttons when `canAlert` (a chair). */
export function renderAlerts(el, store, { canAlert, onEdit, onCancel }) {
  const alerts = activeAlerts(store);
  if (!alerts.length) {
    el.replaceChildren(h('p', { class: 'muted' }, t('alerts.none')));
    return;
  }
  el.replaceChildren(
    h(
      'ul',
      { class: 'alerts' },
      alerts.map((a) => {
        const exercise = a.status !== 'actual';
        return h(
          'li',
          { class: `alert ${exercise ? 'exercise' : 'actual'}`, dataset: { alertId: a.alert_id } },
          h('span', { class: `badge status-${a.status}` }, a.status.toUpperCase()),
          ' ',
          h('strong', {}, a.headline || `${a.hazard} ${a.alert_id}`),
          h('div', { class: 'muted' }, `${a.alert_id} · ${t('alerts.revision', { revision: a.revision })} · ${t('alerts.by', { user: a.issued_by })}`),
          canAlert
            ? h(
                'div',
                { class: 'actions' },
                h('button', { type: 'button', onclick: () => onEdit(a) }, t('alerts.select')),
                h('button', { type: 'button', class: 'danger', onclick: () => onCancel(a) }, t('alerts.cancel')),
              )
            : null,
        );
      }),
    ),
  );
}

/** Impact by district of every active alert: people per band, displaced, placed, shortfall. */
export function renderImpact(el, store, { onVillage }) {
  const parts = [];
  for (const alert of activeAlerts(store)) {
    const impact = store.impacts.get(alert.alert_id);
    if (!impact?.summary) continue;
    const s = impact.summary;
    const total = s.total || {};
    parts.push(
      h('h3', {}, alert.headline || alert.alert_id, alert.status !== 'actual' ? h('span', { class: 'badge status-exercise' }, ` ${alert.status.toUpperCase()}`) : null),
      h(
        'p',
        { class: 'impact-summary', dataset: { alertId: alert.alert_id } },
        t('impact.summary', {
          villages: formatNumber(total.villages ?? impact.villages.length),
          people: formatNumber(total.people),
          displaced: formatNumber(total.displaced),
          shortfall: formatNumber(total.shortfall),
        }),
      ),
    );
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, t('impact.district')),
      (s.bands || []).map((b) => h('th', { scope: 'col', class: 'num' }, b)),
      h('th', { scope: 'col', class: 'num' }, t('impact.displaced')),
      h('th', { scope: 'col', class: 'num' }, t('impact.placed')),
      h('th', { scope: 'col', class: 'num' }, t('impact.shortfall')),
    );
    const row = (r, label, cls) =>
      h(
        'tr',
        { class: cls },
        h('th', { scope: 'row' }, label),
        (r.people_by_band || []).map((n) => h('td', { class: 'num' }, formatNumber(n))),
        h('td', { class: 'num' }, formatNumber(r.displaced)),
        h('td', { class: 'num' }, formatNumber(r.placed)),
        h('td', { class: `num ${r.shortfall > 0 ? 'short' : ''}` }, formatNumber(r.shortfall)),
      );
    parts.push(
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'impact' },
          h('thead', {}, head),
          h('tbody', {}, (s.districts || []).map((r) => row(r, r.district, ''))),
          h('tfoot', {}, row(total, t('impact.total'), 'total')),
        ),
      ),
    );
    const top = (impact.villages || []).slice(0, 10);
    if (top.length) {
      parts.push(
        h('h4', {}, t('impact.topVillages')),
        h(
          'ol',
          { class: 'villages' },
          top.map((v) =>
            h(
              'li',
              {},
              h(
                'button',
                { type: 'button', class: 'link', dataset: { villageId: v.village_id }, onclick: () => onVillage(v, alert) },
                `${v.name} (${v.district})`,
              ),
              ` ${v.intensity != null ? intensityBand(v.intensity) : ''} · ${formatNumber(v.displaced)} ${t('impact.displaced').toLowerCase()}`,
            ),
          ),
        ),
      );
    }
  }
  el.replaceChildren(...(parts.length ? parts : [h('p', { class: 'muted' }, t('impact.none'))]));
}

/** Sites, sortable by free places or last update, filterable by name or id. */
export function renderSites(el, store, { sortKey, filter, nowMs, onSite }) {
  const needle = (filter || '').trim().toLowerCase();
  let sites = sortedSites(store, sortKey);
  if (needle) sites = sites.filter((s) => s.name.toLowerCase().includes(needle) || s.site_id.toLowerCase().includes(needle) || s.district.toLowerCase().includes(needle));
  const shown = sites.slice(0, MAX_ROWS);
  el.replaceChildren(
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'sites' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, t('sites.name')),
            h('th', { scope: 'col', class: 'num' }, t('sites.free')),
            h('th', { scope: 'col' }, t('sites.used')),
            h('th', { scope: 'col' }, t('sites.updated')),
          ),
        ),
        h(
          'tbody',
          {},
          shown.map((s) => {
            const g = siteGauge(s);
            return h(
              'tr',
              { class: `level-${g.level}`, dataset: { siteId: s.site_id } },
              h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', onclick: () => onSite(s) }, s.name), h('div', { class: 'muted' }, s.district)),
              h('td', { class: 'num' }, formatNumber(g.free)),
              h(
                'td',
                {},
                h('meter', { min: 0, max: Math.max(1, g.capacity), value: Math.min(g.used, g.capacity), low: Math.max(1, g.capacity) * 0.7, high: Math.max(1, g.capacity) * 0.9, optimum: 0, 'aria-label': t(`sites.level.${g.level}`) }),
                ' ',
                h('span', { class: 'gauge-text' }, `${formatNumber(g.used)} / ${formatNumber(g.capacity)}`),
                ' ',
                h('span', { class: `badge level-${g.level}` }, t(`sites.level.${g.level}`)),
                g.overcrowded ? h('span', { class: 'badge level-full' }, t('sites.overcrowded')) : null,
              ),
              h('td', {}, s.updated_at ? formatSince(s.updated_at, nowMs) : '—'),
            );
          }),
        ),
      ),
    ),
    showing(shown.length, sites.length),
  );
}

/** Teams: status, task, last seen, battery, with stale and low-battery flags spelled out. */
export function renderTeams(el, store, { nowMs, onTeam }) {
  const teams = sortedTeams(store);
  const shown = teams.slice(0, MAX_ROWS);
  el.replaceChildren(
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'teams' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, t('teams.name')),
            h('th', { scope: 'col' }, t('teams.status')),
            h('th', { scope: 'col' }, t('teams.task')),
            h('th', { scope: 'col' }, t('teams.lastSeen')),
            h('th', { scope: 'col', class: 'num' }, t('teams.battery')),
          ),
        ),
        h(
          'tbody',
          {},
          shown.map((team) => {
            const f = teamFlags(team, nowMs);
            const task = team.task_id ? store.tasks.get(team.task_id) : null;
            return h(
              'tr',
              { class: `status-${team.status}${f.stale ? ' stale' : ''}`, dataset: { teamId: team.team_id } },
              h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', onclick: () => onTeam(team) }, team.team_id), h('div', { class: 'muted' }, team.name)),
              h('td', {}, h('span', { class: `badge team-${team.status}` }, t(`status.${team.status}`)), f.stale ? h('span', { class: 'badge warn' }, t('teams.stale')) : null),
              h('td', {}, task ? `${task.task_id} · ${t(`task.${task.state}`)}` : '—'),
              h('td', {}, formatSince(team.last_seen, nowMs)),
              h('td', { class: `num ${f.lowBattery ? 'short' : ''}` }, team.battery_pct != null ? `${Math.round(team.battery_pct)} %` : '—', f.lowBattery ? h('span', { class: 'badge warn' }, t('teams.lowBattery')) : null),
            );
          }),
        ),
      ),
    ),
    showing(shown.length, teams.length),
  );
}

/** Active and recent tasks with their states, and accept / reassign buttons when `canAssign` (an operator or chair). */
export function renderTasks(el, store, { canAssign, onAccept, onReassign, placeName }) {
  const tasks = [...store.tasks.values()].reverse().slice(0, MAX_ROWS);
  if (!tasks.length) {
    el.replaceChildren(h('p', { class: 'muted' }, t('board.none')));
    return;
  }
  el.replaceChildren(
    h(
      'ul',
      { class: 'tasks' },
      tasks.map((task) =>
        h(
          'li',
          { class: `task state-${task.state}`, dataset: { taskId: task.task_id, state: task.state } },
          h('span', { class: `badge task-${task.state}` }, t(`task.${task.state}`)),
          ' ',
          t('tasks.line', { task: task.task_id, team: task.team_id, destination: placeName(task) }),
          ` · ${formatDistance(task.distance_m)}`,
          canAssign && task.state === 'proposed' ? h('button', { type: 'button', dataset: { accept: task.task_id }, onclick: () => onAccept(task) }, t('tasks.accept')) : null,
          canAssign && ['proposed', 'assigned', 'acknowledged'].includes(task.state)
            ? h('button', { type: 'button', dataset: { reassign: task.task_id }, onclick: () => onReassign(task) }, t('tasks.reassign'))
            : null,
        ),
      ),
    ),
    showing(tasks.length, store.tasks.size),
  );
}

/** The event log, newest first. */
export function renderEvents(el, store) {
  const events = store.events.slice(-MAX_ROWS).reverse();
  if (!events.length) {
    el.replaceChildren(h('p', { class: 'muted' }, t('board.none')));
    return;
  }
  el.replaceChildren(
    h(
      'ol',
      { class: 'events' },
      events.map((e) => h('li', { class: `event kind-${e.kind}` }, h('time', { datetime: e.at }, new Date(e.at).toLocaleTimeString()), ' ', e.text)),
    ),
  );
}

/** Time of day of an audit record, 24-hour with seconds. */
function clock(at) {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

/** The audit trail's entries (`GET /api/v1/audit`), newest first: when, who, what and why. */
export function renderAudit(el, { entries = [], dropped = 0 } = {}) {
  const rows = entries.slice(0, MAX_ROWS);
  const note = dropped > 0 ? h('p', { class: 'muted' }, t('audit.dropped', { n: formatNumber(dropped) })) : null;
  if (!rows.length) {
    el.replaceChildren(...[h('p', { class: 'muted' }, t('audit.none')), note].filter(Boolean));
    return;
  }
  const table = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'audit' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, t('audit.at')),
          h('th', { scope: 'col' }, t('audit.by')),
          h('th', { scope: 'col' }, `${t('audit.action')} · ${t('audit.reason')}`),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((e) =>
          h(
            'tr',
            { class: `outcome-${e.outcome}`, dataset: { outcome: e.outcome, by: e.by, code: e.code || '' } },
            h('td', { class: 'nowrap' }, e.at ? h('time', { datetime: e.at }, clock(e.at)) : '—'),
            h(
              'th',
              { scope: 'row', class: 'nowrap' },
              e.by === 'unauthenticated' && !e.role ? h('em', {}, t('audit.unauthenticated')) : e.by,
              e.role ? h('div', { class: 'muted' }, t(`role.${e.role}`)) : null,
            ),
            h(
              'td',
              {},
              h(
                'div',
                {},
                h('strong', {}, e.action),
                e.target ? ` ${e.target}` : '',
                // Accepted position reports come summarised, with their count.
                e.count > 1 ? ` ×${formatNumber(e.count)}` : '',
                h('span', { class: 'muted' }, ` · ${e.edge}`),
              ),
              h('div', {}, h('span', { class: `badge outcome-${e.outcome}` }, e.code || e.outcome), ' ', e.reason || ''),
            ),
          ),
        ),
      ),
    ),
  );
  el.replaceChildren(...[table, note].filter(Boolean));
}
