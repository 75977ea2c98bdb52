// The dashboard's client-side store: the server's snapshot plus every delta
// frame applied in `seq` order, and the views the map and boards derive
// from it. Pure: no DOM, no network, no clock reads (time is passed in), so
// it is tested with Node's test runner (test/state.test.js).
//
// The protocol (eoc-protocol/PROTOCOL.md, "Snapshot and deltas"): a
// snapshot `{type: "snapshot", seq, alerts, impacts, sites, teams, tasks}`,
// then frames `{v, seq, server_ts_ms, type, ...object}` with `seq` rising by
// exactly one. A gap means frames were missed: the store refuses to apply
// anything more and asks for a resync (a fresh snapshot).

/** Most event-log lines kept; older ones are dropped (hours of running must not grow memory). */
export const MAX_EVENTS = 500;

/** A team's position older than this is shown as stale. */
export const STALE_POSITION_MS = 10 * 60 * 1000;

/** A team's battery below this share is shown as low. */
export const LOW_BATTERY_PCT = 20;

/** A site counts as near full at this share of its capacity used (occupied + allocated), as the server's sitrep does. */
export const NEAR_FULL_SHARE = 0.9;

/** Task states after which a task no longer ties its team. */
export const TERMINAL_TASK_STATES = new Set(['completed', 'declined', 'timed_out', 'cancelled']);

/** An empty store, before the first snapshot. */
export function createStore() {
  return {
    seq: null,
    serverTsMs: null,
    alerts: new Map(),
    impacts: new Map(),
    sites: new Map(),
    teams: new Map(),
    tasks: new Map(),
    events: [],
    resyncNeeded: false,
    snapshots: 0,
    framesApplied: 0,
    changed: emptyChanges(true),
  };
}

function emptyChanges(all) {
  return {
    all,
    alerts: new Set(),
    impacts: new Set(),
    sites: new Set(),
    teams: new Set(),
    tasks: new Set(),
    events: false,
  };
}

/** Takes (and clears) what changed since the last call, for the renderer. */
export function takeChanges(store) {
  const changed = store.changed;
  store.changed = emptyChanges(false);
  return changed;
}

function byId(list, key) {
  const map = new Map();
  for (const item of list || []) map.set(item[key], item);
  return map;
}

/** Replaces the whole state with a snapshot. The event log is kept: it is not part of a snapshot. */
export function applySnapshot(store, snap) {
  store.seq = snap.seq;
  store.serverTsMs = snap.server_ts_ms ?? null;
  store.alerts = byId(snap.alerts, 'alert_id');
  store.impacts = byId(snap.impacts, 'alert_id');
  store.sites = byId(snap.sites, 'site_id');
  store.teams = byId(snap.teams, 'team_id');
  store.tasks = byId(snap.tasks, 'task_id');
  store.resyncNeeded = false;
  store.snapshots += 1;
  store.changed = emptyChanges(true);
}

/**
 * Applies one delta frame. Returns what happened:
 * `applied`; `stale` (seq already seen, ignored); `gap` (frames missed: the
 * store is marked for resync and ignores frames until the next snapshot);
 * `waiting` (no snapshot yet, or a resync is pending).
 */
export function applyFrame(store, frame) {
  if (store.seq === null || store.resyncNeeded) return 'waiting';
  if (frame.seq <= store.seq) return 'stale';
  if (frame.seq !== store.seq + 1) {
    store.resyncNeeded = true;
    return 'gap';
  }
  store.seq = frame.seq;
  store.serverTsMs = frame.server_ts_ms ?? store.serverTsMs;
  store.framesApplied += 1;
  const c = store.changed;
  switch (frame.type) {
    case 'alert':
      store.alerts.set(frame.alert_id, strip(frame));
      c.alerts.add(frame.alert_id);
      break;
    case 'impact':
      store.impacts.set(frame.alert_id, strip(frame));
      c.impacts.add(frame.alert_id);
      break;
    case 'allocation': {
      // Only the allocation changed: keep the villages of the last impact.
      const old = store.impacts.get(frame.alert_id) || { alert_id: frame.alert_id, villages: [], threshold_intensity: null };
      store.impacts.set(frame.alert_id, {
        ...old,
        summary: frame.summary,
        allocations: frame.allocations,
        shortfall: frame.shortfall,
      });
      c.impacts.add(frame.alert_id);
      break;
    }
    case 'site':
      store.sites.set(frame.site_id, strip(frame));
      c.sites.add(frame.site_id);
      break;
    case 'team':
      store.teams.set(frame.team_id, strip(frame));
      c.teams.add(frame.team_id);
      break;
    case 'task':
      store.tasks.set(frame.task_id, strip(frame));
      c.tasks.add(frame.task_id);
      break;
    case 'event':
      store.events.push({ seq: frame.seq, at: frame.at, kind: frame.kind, text: frame.text });
      if (store.events.length > MAX_EVENTS) store.events.splice(0, store.events.length - MAX_EVENTS);
      c.events = true;
      break;
    default:
      // A newer v1 server may send kinds this page does not know: skip them.
      break;
  }
  return 'applied';
}

function strip(frame) {
  const { v: _v, seq: _seq, server_ts_ms: _ts, type: _type, ...object } = frame;
  return object;
}

/**
 * Handles one WebSocket message. Returns `resync` when the connection must
 * be replaced to get a fresh snapshot, `ack`/`error` for answers to what the
 * page sent, else `ok`.
 */
export function applyMessage(store, msg) {
  if (msg.type === 'snapshot') {
    applySnapshot(store, msg);
    return 'ok';
  }
  if (msg.type === 'ack' || msg.type === 'error') return msg.type;
  if (typeof msg.seq !== 'number') return 'ok';
  const result = applyFrame(store, msg);
  return result === 'gap' ? 'resync' : 'ok';
}

// ---- derived views ---------------------------------------------------------

/** Alerts in force (not cancelled, not expired), newest first. */
export function activeAlerts(store) {
  return [...store.alerts.values()]
    .filter((a) => a.active)
    .sort((a, b) => collator.compare(String(b.updated_at), String(a.updated_at)));
}

/** Every alert, active first, then newest first. */
export function allAlerts(store) {
  return [...store.alerts.values()].sort(
    (a, b) => Number(b.active) - Number(a.active) || String(b.updated_at).localeCompare(String(a.updated_at)),
  );
}

/**
 * Per village, its worst exposure over the active alerts:
 * `village_id → {intensity, displaced, alert_id, exercise}`. Villages of
 * exercise and test alerts are marked so the map can draw them differently.
 */
export function villageExposure(store) {
  const out = new Map();
  for (const impact of store.impacts.values()) {
    const alert = store.alerts.get(impact.alert_id);
    if (!alert || !alert.active) continue;
    const exercise = alert.status !== 'actual';
    for (const v of impact.villages || []) {
      const old = out.get(v.village_id);
      const score = v.intensity ?? 0;
      if (!old || score > (old.intensity ?? 0) || (!exercise && old.exercise)) {
        out.set(v.village_id, {
          intensity: v.intensity ?? null,
          displaced: v.displaced,
          alert_id: impact.alert_id,
          exercise,
        });
      }
    }
  }
  return out;
}

/**
 * A site's gauge: people used (occupied + allocated), free places, the
 * share used, and a level for colour and shape: `closed`, `full` (status
 * full, or no room left), `near_full`, or `open`.
 */
export function siteGauge(site) {
  const used = (site.occupancy || 0) + (site.allocated || 0);
  const capacity = site.capacity || 0;
  const free = Math.max(0, capacity - used);
  const share = capacity > 0 ? used / capacity : 1;
  let level = 'open';
  if (site.status === 'closed') level = 'closed';
  else if (site.status === 'full' || (capacity > 0 && used >= capacity) || capacity === 0) level = 'full';
  else if (share >= NEAR_FULL_SHARE) level = 'near_full';
  return { used, capacity, free, share: Math.min(share, 1), overcrowded: used > capacity, level };
}

// One collator for every name sort: far cheaper than localeCompare per pair.
const collator = new Intl.Collator();

/** Sites sorted for the board: by `free` (most room first), `updated` (latest first) or `name`. */
export function sortedSites(store, key = 'free') {
  const rows = [...store.sites.values()].map((site) => ({ site, free: siteGauge(site).free, updated: site.updated_at || '' }));
  const byName = (a, b) => collator.compare(a.site.name, b.site.name);
  const cmp = {
    free: (a, b) => b.free - a.free || byName(a, b),
    updated: (a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : 0) || byName(a, b),
    name: byName,
  }[key] || byName;
  return rows.sort(cmp).map((r) => r.site);
}

/**
 * What a team's marker must make obvious: `offline`, `stale` (no position
 * for {@link STALE_POSITION_MS}), `lowBattery`, plus ages in ms.
 */
export function teamFlags(team, nowMs) {
  const positionMs = team.position_at ? Date.parse(team.position_at) : null;
  const seenMs = team.last_seen ? Date.parse(team.last_seen) : null;
  const positionAgeMs = positionMs === null ? null : Math.max(0, nowMs - positionMs);
  return {
    offline: team.status === 'offline',
    stale: positionAgeMs === null || positionAgeMs > STALE_POSITION_MS,
    lowBattery: typeof team.battery_pct === 'number' && team.battery_pct < LOW_BATTERY_PCT,
    positionAgeMs,
    lastSeenAgeMs: seenMs === null ? null : Math.max(0, nowMs - seenMs),
  };
}

/** Great-circle distance in metres (haversine; good to well under 1 % at these ranges). */
export function distanceM(lat1, lon1, lat2, lon2) {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

const STATUS_ORDER = { available: 0, en_route: 1, on_site: 2, unavailable: 3, offline: 4 };

/**
 * Teams to offer for a destination, best first: free teams before busy
 * ones, then offline last, then nearest. Each entry carries `distance_m` and
 * `busy` (it has an active task, which assigning would replace).
 */
export function teamsFor(store, lat, lon) {
  return [...store.teams.values()]
    .map((team) => ({
      team,
      distance_m: distanceM(lat, lon, team.lat, team.lon),
      busy: Boolean(team.task_id),
    }))
    .sort(
      (a, b) =>
        Number(a.busy) - Number(b.busy) ||
        (STATUS_ORDER[a.team.status] ?? 9) - (STATUS_ORDER[b.team.status] ?? 9) ||
        a.distance_m - b.distance_m,
    );
}

/** Teams for the board: by status, then name. */
export function sortedTeams(store) {
  return [...store.teams.values()].sort(
    (a, b) => (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) || collator.compare(a.name, b.name),
  );
}

/** Tasks still tying a team (not terminal). */
export function activeTasks(store) {
  return [...store.tasks.values()].filter((t) => !TERMINAL_TASK_STATES.has(t.state));
}

/** Tasks the engine proposed and nobody has accepted yet. */
export function proposedTasks(store) {
  return [...store.tasks.values()].filter((t) => t.state === 'proposed');
}

/** Lines team → destination for active tasks: `{task_id, state, from: [lat, lon], to: [lat, lon]}`. */
export function taskLines(store) {
  const out = [];
  for (const task of activeTasks(store)) {
    const team = store.teams.get(task.team_id);
    if (!team) continue;
    out.push({ task_id: task.task_id, state: task.state, from: [team.lat, team.lon], to: [task.destination[1], task.destination[0]] });
  }
  return out;
}

/**
 * Lines village → site for the allocations of active alerts:
 * `{from: [lat, lon], to: [lat, lon], persons}`. `villageAt(id)` gives a
 * village's `[lat, lon]` (from the static village list or the impact).
 */
export function allocationLines(store, villageAt) {
  const out = [];
  for (const impact of store.impacts.values()) {
    const alert = store.alerts.get(impact.alert_id);
    if (!alert || !alert.active) continue;
    const local = new Map((impact.villages || []).map((v) => [v.village_id, [v.location[1], v.location[0]]]));
    for (const a of impact.allocations || []) {
      const site = store.sites.get(a.site_id);
      const from = local.get(a.village_id) || villageAt(a.village_id);
      if (!site || !from) continue;
      out.push({ from, to: [site.lat, site.lon], persons: a.persons });
    }
  }
  return out;
}

/**
 * Radii at which an earthquake's villages reach each intensity band, from
 * the impact itself: for band b, the farthest affected village with
 * intensity ≥ b. Returns `[{band, radius_m}]`, strongest band first. The
 * server does not send the attenuation curve; the affected villages are
 * what the rings summarise.
 */
export function intensityRings(impact) {
  const farthest = new Map();
  for (const v of impact?.villages || []) {
    if (v.intensity == null || v.distance_m == null) continue;
    for (let b = Math.floor(v.intensity); b >= Math.floor(impact.threshold_intensity ?? 6); b -= 1) {
      farthest.set(b, Math.max(farthest.get(b) || 0, v.distance_m));
    }
  }
  return [...farthest.entries()].sort((a, b) => b[0] - a[0]).map(([band, radius_m]) => ({ band, radius_m }));
}
