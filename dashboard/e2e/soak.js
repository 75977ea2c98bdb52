// Runs the dashboard for hours against the real server and reports whether
// its memory grows (see PERF.md). Not a test: nothing is asserted, the
// samples are printed and written to test-artifacts/soak.json.
// Run: cargo build --release -p eoc-server &&
//      (cd dashboard && EOC_SERVER_BIN=../target/release/eoc-server SOAK_MINUTES=120 node e2e/soak.js)
//
// A viewer's page stays open on the real server while
//  - every team of the scenario reports a position over HTTP, SOAK_RATE a
//    second in all (journalled, applied, broadcast, drawn);
//  - every 4 minutes the chair issues an earthquake exercise (villages,
//    rings, allocation and task lines appear) and cancels it 2 minutes later;
//  - every 10 minutes the page's WebSocket is dropped, so it reconnects and
//    takes a fresh snapshot (the resynchronisation path).
// Once a minute the page's garbage is collected (DevTools'
// HeapProfiler.collectGarbage) and then its live heap, DOM nodes and event
// listeners are read (Performance.getMetrics). What survives a collection
// is what the page holds; a leak shows as a rising line.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, signIn, startServer } from './harness.js';

const MINUTES = Number(process.env.SOAK_MINUTES || 10);
const RATE = Number(process.env.SOAK_RATE || 50);
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS || 60_000);
const ALERT_EVERY_MS = 4 * 60_000;
const ALERT_LIFE_MS = 2 * 60_000;
const RECONNECT_EVERY_MS = 10 * 60_000;

const server = await startServer();
const chair = server.firstChairToken();
const viewer = server.addUser('soak', 'viewer');
const relay = server.addUser('soak-relay', 'operator');
const browser = await launchBrowser();
const samples = [];
const counts = { positions: 0, failed: 0, alerts: 0, cancels: 0, reconnects: 0 };

async function post(token, path, body) {
  const r = await fetch(`${server.base}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (!r.ok) counts.failed += 1;
  await r.arrayBuffer();
  return r.ok;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : NaN;
}

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i += 1) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  await signIn(page, server.base, viewer);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const teamIds = await page.evaluate(() => [...window.__eoc.store.teams.keys()]);

  async function sample(minute) {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    const page_ = await page.evaluate(() => ({ seq: window.__eoc.store.seq, ...window.__eoc.inspect() }));
    const s = {
      minute,
      heap_mb: m.JSHeapUsedSize / 1e6,
      nodes: m.Nodes,
      listeners: m.JSEventListeners,
      seq: page_.seq,
      teams: page_.teams,
      ...counts,
    };
    samples.push(s);
    console.log(`t=${minute.toFixed(1).padStart(6)} min  heap=${s.heap_mb.toFixed(2)} MB  nodes=${s.nodes}  listeners=${s.listeners}  seq=${s.seq}  positions=${counts.positions}  alerts=${counts.alerts}  reconnects=${counts.reconnects}  failed=${counts.failed}`);
  }

  const t0 = Date.now();
  const end = t0 + MINUTES * 60_000;
  let nextSample = t0;
  let nextAlert = t0 + 30_000;
  let nextReconnect = t0 + RECONNECT_EVERY_MS;
  const live = [];
  let i = 0;
  let alertNo = 0;
  while (Date.now() < end) {
    const now = Date.now();
    if (now >= nextSample) {
      await sample((now - t0) / 60_000);
      nextSample += SAMPLE_MS;
    }
    if (now >= nextAlert) {
      alertNo += 1;
      const alertId = `soak-eq-${alertNo}`;
      // Epicentres walk across the country so each alert touches other villages.
      const lat = 37.5 + (alertNo * 0.37) % 2.8;
      const lon = 68.0 + (alertNo * 0.61) % 5.0;
      if (await post(chair, '/api/v1/alerts', {
        v: 1, id: `soak-alert-${alertNo}`, ts: new Date().toISOString(), msg_type: 'alert', alert_id: alertId,
        status: 'exercise', hazard: 'earthquake', severity: 'severe', urgency: 'immediate', certainty: 'observed',
        headline: `Soak exercise ${alertNo}`, earthquake: { lat, lon, depth_km: 15, magnitude: 6.5 },
      })) counts.alerts += 1;
      live.push({ alertId, cancelAt: now + ALERT_LIFE_MS });
      nextAlert += ALERT_EVERY_MS;
    }
    while (live.length && live[0].cancelAt <= now) {
      const { alertId } = live.shift();
      if (await post(chair, '/api/v1/alerts', { v: 1, id: `soak-cancel-${alertId}`, ts: new Date().toISOString(), msg_type: 'cancel', alert_id: alertId })) counts.cancels += 1;
    }
    if (now >= nextReconnect) {
      await page.evaluate(() => window.__eoc.live.socket().close());
      counts.reconnects += 1;
      nextReconnect += RECONNECT_EVERY_MS;
    }
    // Positions: RATE a second, in bursts of RATE/10 every 100 ms.
    const burst = [];
    for (let k = 0; k < Math.max(1, RATE / 10); k += 1, i += 1) {
      const team = teamIds[i % teamIds.length];
      burst.push(post(relay, `/api/v1/teams/${team}/position`, {
        v: 1, id: `soak-${i}`, ts: new Date().toISOString(),
        lat: 38.5 + ((i * 7) % 1000) * 0.001, lon: 68.8 + ((i * 13) % 1000) * 0.001,
      }).then((ok) => { if (ok) counts.positions += 1; }));
    }
    await Promise.all(burst);
    const wait = 100 - (Date.now() - now);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await sample((Date.now() - t0) / 60_000);

  const half = samples.filter((s) => s.minute >= MINUTES / 2);
  const first = samples.slice(1, Math.max(2, Math.ceil(samples.length / 4)));
  const last = samples.slice(-Math.max(1, Math.ceil(samples.length / 4)));
  const summary = {
    minutes: MINUTES,
    rate_per_s: RATE,
    ...counts,
    heap_mb_first_quarter_median: median(first.map((s) => s.heap_mb)),
    heap_mb_last_quarter_median: median(last.map((s) => s.heap_mb)),
    heap_mb_max: Math.max(...samples.map((s) => s.heap_mb)),
    heap_mb_per_hour_second_half: slope(half.map((s) => s.minute / 60), half.map((s) => s.heap_mb)),
    nodes_first_last: [samples[1]?.nodes ?? samples[0].nodes, samples.at(-1).nodes],
    listeners_first_last: [samples[1]?.listeners ?? samples[0].listeners, samples.at(-1).listeners],
  };
  console.log(JSON.stringify(summary, null, 2));
  const dir = join(import.meta.dirname, '..', 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'soak.json'), JSON.stringify({ summary, samples }, null, 2));
} finally {
  await browser.close();
  await server.stop();
}
