import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  MAX_EVENTS,
  activeAlerts,
  allocationLines,
  applyFrame,
  applyMessage,
  applySnapshot,
  createStore,
  intensityRings,
  siteGauge,
  sortedSites,
  takeChanges,
  taskLines,
  teamFlags,
  teamsFor,
  villageExposure,
} from '../src/state.js';

const site = (id, capacity, occupancy, extra = {}) => ({
  site_id: id,
  name: `Site ${id}`,
  kind: 'school',
  region: 'R',
  district: 'D',
  lat: 38.5,
  lon: 68.8,
  capacity,
  occupancy,
  allocated: 0,
  status: 'open',
  services: [],
  ...extra,
});

const team = (id, extra = {}) => ({
  team_id: id,
  name: `Team ${id}`,
  skills: ['search_rescue'],
  status: 'available',
  lat: 38.56,
  lon: 68.78,
  ...extra,
});

const alert = (id, extra = {}) => ({
  alert_id: id,
  revision: 1,
  msg_type: 'alert',
  status: 'actual',
  hazard: 'earthquake',
  urgency: 'immediate',
  severity: 'severe',
  certainty: 'observed',
  issued_by: 'chair',
  issued_at: '2025-03-14T04:30:00Z',
  updated_at: '2025-03-14T04:30:00Z',
  earthquake: { lat: 39.02, lon: 70.61, depth_km: 12, magnitude: 6.8 },
  active: true,
  ...extra,
});

function snapshot(seq = 10) {
  return {
    type: 'snapshot',
    v: 1,
    seq,
    server_ts_ms: 1_741_926_600_000,
    alerts: [],
    impacts: [],
    sites: [site('s-1', 500, 100), site('s-2', 300, 0)],
    teams: [team('t-1'), team('t-2', { lat: 39.0, lon: 70.5 })],
    tasks: [],
  };
}

const frame = (seq, type, object) => ({ v: 1, seq, server_ts_ms: 1_741_926_600_000 + seq, type, ...object });

test('a snapshot fills the store and replaces what was there', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  assert.equal(store.seq, 10);
  assert.equal(store.sites.size, 2);
  applyFrame(store, frame(11, 'site', site('s-3', 50, 0)));
  assert.equal(store.sites.size, 3);

  const fresh = snapshot(40);
  fresh.sites = [site('s-9', 10, 0)];
  applySnapshot(store, fresh);
  assert.equal(store.seq, 40);
  assert.deepEqual([...store.sites.keys()], ['s-9'], 'objects missing from the new snapshot are gone');
  assert.equal(takeChanges(store).all, true, 'a snapshot redraws everything');
});

test('deltas in order replace whole objects and strip the frame fields', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  takeChanges(store);
  assert.equal(applyFrame(store, frame(11, 'site', site('s-1', 500, 480))), 'applied');
  assert.equal(applyFrame(store, frame(12, 'team', team('t-1', { lat: 38.6, status: 'en_route' }))), 'applied');
  assert.equal(store.seq, 12);
  assert.equal(store.sites.get('s-1').occupancy, 480);
  assert.equal(store.teams.get('t-1').status, 'en_route');
  assert.equal(store.sites.get('s-1').seq, undefined);
  assert.equal(store.sites.get('s-1').type, undefined);
  const changed = takeChanges(store);
  assert.deepEqual([...changed.sites], ['s-1']);
  assert.deepEqual([...changed.teams], ['t-1']);
  assert.equal(changed.all, false);
  assert.equal(takeChanges(store).sites.size, 0, 'changes are taken once');
});

test('a repeated or older frame is ignored', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  assert.equal(applyFrame(store, frame(10, 'site', site('s-1', 1, 1))), 'stale');
  assert.equal(applyFrame(store, frame(3, 'site', site('s-1', 1, 1))), 'stale');
  assert.equal(store.sites.get('s-1').capacity, 500);
});

test('a seq gap asks for a resync and nothing more is applied until a snapshot', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  assert.equal(applyMessage(store, frame(12, 'site', site('s-1', 500, 499))), 'resync');
  assert.equal(store.resyncNeeded, true);
  assert.equal(store.sites.get('s-1').occupancy, 100, 'the frame after the gap is not applied');
  assert.equal(applyFrame(store, frame(13, 'site', site('s-1', 500, 498))), 'waiting');
  assert.equal(store.seq, 10);
  applyMessage(store, snapshot(13));
  assert.equal(store.resyncNeeded, false);
  assert.equal(applyFrame(store, frame(14, 'site', site('s-1', 500, 7))), 'applied');
  assert.equal(store.sites.get('s-1').occupancy, 7);
});

test('frames before the first snapshot wait', () => {
  const store = createStore();
  assert.equal(applyFrame(store, frame(1, 'site', site('s-1', 1, 1))), 'waiting');
  assert.equal(store.sites.size, 0);
});

test('acks and errors pass through; unknown delta kinds are skipped but counted in seq', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  assert.equal(applyMessage(store, { type: 'ack', id: 'x', seq: 11 }), 'ack');
  assert.equal(applyMessage(store, { type: 'error', id: 'x', errors: [] }), 'error');
  assert.equal(store.seq, 10, 'an ack is not a frame');
  assert.equal(applyMessage(store, frame(11, 'weather', { wind: 3 })), 'ok');
  assert.equal(store.seq, 11);
});

test('the event log keeps the newest lines only', () => {
  const store = createStore();
  applySnapshot(store, snapshot(0));
  for (let i = 1; i <= MAX_EVENTS + 25; i += 1) {
    applyFrame(store, frame(i, 'event', { at: '2025-03-14T04:30:00Z', kind: 'k', text: `line ${i}` }));
  }
  assert.equal(store.events.length, MAX_EVENTS);
  assert.equal(store.events[0].text, 'line 26');
  assert.equal(store.events.at(-1).text, `line ${MAX_EVENTS + 25}`);
  applySnapshot(store, snapshot(MAX_EVENTS + 30));
  assert.equal(store.events.length, MAX_EVENTS, 'a resync keeps the log');
});

test('an allocation delta keeps the impact villages and replaces the allocation', () => {
  const store = createStore();
  applySnapshot(store, snapshot(10));
  const villages = [
    { village_id: 'v-1', name: 'V1', district: 'D', location: [68.78, 38.56], population: 5000, population_estimated: false, intensity: 8.4, distance_m: 12000, displaced: 1500, priority: 1 },
  ];
  applyFrame(store, frame(11, 'alert', alert('eq-1')));
  applyFrame(store, frame(12, 'impact', { alert_id: 'eq-1', threshold_intensity: 6, villages, summary: { bands: [], districts: [], total: {} }, allocations: [], shortfall: [{ village_id: 'v-1', persons: 1500 }] }));
  applyFrame(store, frame(13, 'allocation', { alert_id: 'eq-1', summary: { bands: ['VIII'], districts: [], total: { placed: 500 } }, allocations: [{ village_id: 'v-1', site_id: 's-1', persons: 500, distance_m: 900 }], shortfall: [{ village_id: 'v-1', persons: 1000 }] }));
  const impact = store.impacts.get('eq-1');
  assert.equal(impact.villages.length, 1);
  assert.equal(impact.allocations[0].persons, 500);
  assert.equal(impact.shortfall[0].persons, 1000);
  const lines = allocationLines(store, () => null);
  assert.deepEqual(lines, [{ from: [38.56, 68.78], to: [38.5, 68.8], persons: 500 }]);
});

test('village exposure takes the worst active alert and drops cancelled ones', () => {
  const store = createStore();
  applySnapshot(store, snapshot(0));
  const v = (id, intensity) => ({ village_id: id, name: id, district: 'D', location: [68, 38], population: 100, population_estimated: false, intensity, distance_m: 1000, displaced: 10, priority: 1 });
  const impact = (id, villages) => ({ alert_id: id, threshold_intensity: 6, villages, summary: {}, allocations: [], shortfall: [] });
  applyFrame(store, frame(1, 'alert', alert('a')));
  applyFrame(store, frame(2, 'alert', alert('b', { status: 'exercise' })));
  applyFrame(store, frame(3, 'impact', impact('a', [v('v-1', 7.2)])));
  applyFrame(store, frame(4, 'impact', impact('b', [v('v-1', 8.1), v('v-2', 6.5)])));
  let ex = villageExposure(store);
  assert.equal(ex.get('v-1').intensity, 8.1);
  assert.equal(ex.get('v-2').exercise, true);
  assert.deepEqual(activeAlerts(store).map((a) => a.alert_id).sort(), ['a', 'b']);
  applyFrame(store, frame(5, 'alert', alert('b', { status: 'exercise', msg_type: 'cancel', active: false })));
  ex = villageExposure(store);
  assert.equal(ex.get('v-1').intensity, 7.2);
  assert.equal(ex.get('v-1').exercise, false);
  assert.equal(ex.has('v-2'), false);
  assert.deepEqual(activeAlerts(store).map((a) => a.alert_id), ['a']);
});

test('site gauges: open, near full, full, closed and overcrowded', () => {
  assert.equal(siteGauge(site('a', 100, 10)).level, 'open');
  assert.equal(siteGauge(site('a', 100, 10)).free, 90);
  assert.equal(siteGauge(site('a', 100, 50, { allocated: 41 })).level, 'near_full');
  assert.equal(siteGauge(site('a', 100, 100)).level, 'full');
  assert.equal(siteGauge(site('a', 100, 10, { status: 'full' })).level, 'full');
  assert.equal(siteGauge(site('a', 100, 10, { status: 'closed' })).level, 'closed');
  const over = siteGauge(site('a', 100, 130));
  assert.equal(over.overcrowded, true);
  assert.equal(over.free, 0);
  assert.equal(over.share, 1);
});

test('sites sort by free places or by last update', () => {
  const store = createStore();
  const snap = snapshot(0);
  snap.sites = [
    site('a', 100, 90, { updated_at: '2025-03-14T05:00:00Z' }),
    site('b', 300, 0),
    site('c', 200, 0, { updated_at: '2025-03-14T06:00:00Z' }),
  ];
  applySnapshot(store, snap);
  assert.deepEqual(sortedSites(store, 'free').map((s) => s.site_id), ['b', 'c', 'a']);
  assert.deepEqual(sortedSites(store, 'updated').map((s) => s.site_id), ['c', 'a', 'b']);
});

test('team flags: stale position, low battery, offline', () => {
  const now = Date.parse('2025-03-14T05:00:00Z');
  const fresh = team('t', { position_at: '2025-03-14T04:55:00Z', last_seen: '2025-03-14T04:59:00Z', battery_pct: 64 });
  assert.deepEqual(
    { ...teamFlags(fresh, now) },
    { offline: false, stale: false, lowBattery: false, positionAgeMs: 300_000, lastSeenAgeMs: 60_000 },
  );
  const old = team('t', { position_at: '2025-03-14T04:49:00Z', battery_pct: 12, status: 'offline' });
  const flags = teamFlags(old, now);
  assert.equal(flags.stale, true);
  assert.equal(flags.lowBattery, true);
  assert.equal(flags.offline, true);
  assert.equal(teamFlags(team('t'), now).stale, true, 'a team never located is stale');
});

test('teams are offered free first, then nearest', () => {
  const store = createStore();
  const snap = snapshot(0);
  snap.teams = [
    team('near-busy', { lat: 38.561, lon: 68.781, task_id: 'task-1', status: 'en_route' }),
    team('far', { lat: 39.5, lon: 70.5 }),
    team('near', { lat: 38.6, lon: 68.8 }),
    team('off', { lat: 38.56, lon: 68.78, status: 'offline' }),
  ];
  applySnapshot(store, snap);
  const offered = teamsFor(store, 38.56, 68.78).map((e) => e.team.team_id);
  assert.deepEqual(offered, ['near', 'far', 'off', 'near-busy']);
});

test('task lines join teams to their destinations while the task is active', () => {
  const store = createStore();
  applySnapshot(store, snapshot(0));
  const task = { task_id: 'task-1', team_id: 't-1', village_id: 'v-1', destination: [68.9, 38.7], state: 'assigned', distance_m: 1, history: [] };
  applyFrame(store, frame(1, 'task', task));
  assert.deepEqual(taskLines(store), [{ task_id: 'task-1', state: 'assigned', from: [38.56, 68.78], to: [38.7, 68.9] }]);
  applyFrame(store, frame(2, 'task', { ...task, state: 'completed' }));
  assert.deepEqual(taskLines(store), []);
});

test('intensity rings reach the farthest village of each band', () => {
  const impact = {
    threshold_intensity: 6,
    villages: [
      { intensity: 8.2, distance_m: 10_000 },
      { intensity: 7.5, distance_m: 30_000 },
      { intensity: 6.1, distance_m: 80_000 },
    ],
  };
  assert.deepEqual(intensityRings(impact), [
    { band: 8, radius_m: 10_000 },
    { band: 7, radius_m: 30_000 },
    { band: 6, radius_m: 80_000 },
  ]);
});
