// Measures the dashboard under load in Debian's Chromium and prints the
// figures (see PERF.md). Not a test: nothing is asserted, numbers are
// reported. Run: cargo build -p eoc-server && (cd dashboard && npm run perf)
//
// 1. Client load: the page, connected to a real server, is switched to a
//    synthetic world of 3,000 villages and 1,000 teams (a snapshot fed
//    through the page's WebSocket message path), then sent 100 team moves a
//    second for PERF_SECONDS. Reported: the work of each batched frame
//    (store → markers → canvas drawn), the interval between animation
//    frames, and the delay from a message's arrival to the end of the frame
//    that drew it.
// 2. Server to screen: 100 real team positions a second posted to the real
//    server over HTTP; reported is the delay from the server applying each
//    one (its server_ts_ms) to the page having drawn it.

import { launchBrowser, signIn, startServer } from './harness.js';

const PERF_SECONDS = Number(process.env.PERF_SECONDS || 10);
const RATE_PER_S = 100;

function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  return { n: v.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: v.at(-1) };
}

function show(label, s) {
  const f = (x) => (x === undefined ? '—' : x.toFixed(1));
  console.log(`${label.padEnd(44)} n=${String(s.n).padStart(6)}  p50=${f(s.p50)}  p95=${f(s.p95)}  p99=${f(s.p99)}  max=${f(s.max)} ms`);
}

const server = await startServer();
// A viewer watches; the positions of part 2 are relayed by an operator's
// console (a responder may send only 20 a second, and only for its team).
const viewerToken = server.addUser('perf', 'viewer');
const relayToken = server.addUser('perf-relay', 'operator');
const browser = await launchBrowser();
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  await signIn(page, server.base, viewerToken);

  // ---- 1. synthetic 3,000 villages and 1,000 teams --------------------------
  const client = await page.evaluate(
    async ({ seconds, rate }) => {
      const eoc = window.__eoc;
      eoc.live.close();
      // Pad the real villages to 3,000 with synthetic ones in the same box.
      const have = eoc.inspect().villages;
      const extra = [];
      for (let i = have; i < 3000; i += 1) {
        extra.push({ village_id: `syn-v-${i}`, name: `V${i}`, district: 'Synthetic', lat: 37 + Math.random() * 3.8, lon: 67.5 + Math.random() * 7.3, population: 500 });
      }
      eoc.map.setVillages(extra);
      const snap = JSON.parse(JSON.stringify({ ...Object.fromEntries(['alerts', 'impacts', 'sites', 'tasks'].map((k) => [k, [...eoc.store[k].values()]])) }));
      const statuses = ['available', 'en_route', 'on_site', 'unavailable', 'offline'];
      const now = new Date().toISOString();
      snap.teams = Array.from({ length: 1000 }, (_, i) => ({
        team_id: `syn-team-${i}`,
        name: `Synthetic ${i}`,
        skills: ['search_rescue'],
        status: statuses[i % 5],
        lat: 37 + Math.random() * 3.8,
        lon: 67.5 + Math.random() * 7.3,
        position_at: now,
        last_seen: now,
        battery_pct: 10 + (i % 90),
      }));
      let seq = 1_000_000;
      eoc.inject({ type: 'snapshot', v: 1, seq, server_ts_ms: Date.now(), ...snap });
      await new Promise((r) => setTimeout(r, 1000));
      eoc.perf.reset();

      // Animation-frame intervals, measured independently of the page's own frames.
      const intervals = [];
      let last = performance.now();
      let measuring = true;
      const tick = (t) => {
        intervals.push(t - last);
        last = t;
        if (measuring) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);

      // Instrument the canvas redraw (all drawing of markers happens there).
      const redraws = [];
      const proto = window.L.Canvas.prototype;
      const original = proto._redraw;
      proto._redraw = function redraw() {
        const t0 = performance.now();
        original.call(this);
        redraws.push(performance.now() - t0);
      };

      const teams = snap.teams;
      const total = seconds * rate;
      let sent = 0;
      const start = performance.now();
      await new Promise((done) => {
        // 10 moves every 100 ms: 100 a second, spread over the frames.
        const timer = setInterval(() => {
          for (let k = 0; k < rate / 10 && sent < total; k += 1, sent += 1) {
            const team = teams[Math.floor(Math.random() * teams.length)];
            team.lat = Math.min(40.9, Math.max(36.8, team.lat + (Math.random() - 0.5) * 0.02));
            team.lon = Math.min(74.9, Math.max(67.4, team.lon + (Math.random() - 0.5) * 0.02));
            team.position_at = new Date().toISOString();
            seq += 1;
            eoc.inject({ v: 1, seq, server_ts_ms: Date.now(), type: 'team', ...team });
          }
          if (sent >= total) {
            clearInterval(timer);
            done();
          }
        }, 100);
      });
      await new Promise((r) => setTimeout(r, 500));
      measuring = false;
      proto._redraw = original;
      return {
        elapsedS: (performance.now() - start) / 1000,
        sent,
        villages: eoc.inspect().villages,
        teams: eoc.inspect().teams,
        frameWork: eoc.perf.samples,
        latency: eoc.perf.latencies,
        intervals: intervals.slice(1),
        redraws,
        heapMb: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null,
      };
    },
    { seconds: PERF_SECONDS, rate: RATE_PER_S },
  );
  console.log(`client load: ${client.villages} villages, ${client.teams} teams, ${client.sent} team moves in ${client.elapsedS.toFixed(1)} s (${(client.sent / client.elapsedS).toFixed(0)}/s), Chromium headless, 1366×768`);
  show('frame work (store → markers → canvas), ms', stats(client.frameWork));
  show('canvas redraw, ms', stats(client.redraws));
  show('interval between animation frames, ms', stats(client.intervals));
  show('message arrival → drawn, ms', stats(client.latency));
  if (client.heapMb) console.log(`JS heap after the run: ${client.heapMb.toFixed(0)} MB`);

  // ---- 2. real server → screen ----------------------------------------------------
  await page.reload();
  await page.waitForFunction(() => window.__eoc && window.__eoc.store.seq !== null && window.__eoc.inspect().villages > 0);
  const teamIds = await page.evaluate(() => [...window.__eoc.store.teams.keys()]);
  await page.evaluate(() => {
    // Record, per team frame drawn, server apply → drawn.
    window.__lat = [];
    const eoc = window.__eoc;
    const original = eoc.map.flush;
    eoc.map.flush = () => {
      original();
      const now = Date.now();
      for (const id of window.__seen || []) window.__lat.push(now - id);
      window.__seen = [];
    };
  });
  // Wrap the store's frame application to note server_ts_ms of team frames.
  await page.evaluate(() => {
    const ws = window.__eoc.live.socket();
    ws.addEventListener('message', (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'team') (window.__seen ||= []).push(m.server_ts_ms);
    });
  });
  const total = PERF_SECONDS * RATE_PER_S;
  const t0 = Date.now();
  for (let i = 0; i < total; i += 1) {
    const team = teamIds[i % teamIds.length];
    const due = t0 + (i * 1000) / RATE_PER_S;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await fetch(`${server.base}/api/v1/teams/${team}/position`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${relayToken}` },
      body: JSON.stringify({ v: 1, id: `perf-${i}`, ts: new Date().toISOString(), lat: 38.5 + (i % 100) * 0.001, lon: 68.8 + (i % 77) * 0.001 }),
    });
  }
  await new Promise((r) => setTimeout(r, 1000));
  const lat = await page.evaluate(() => window.__lat);
  console.log(`server → screen: ${total} positions posted at ${RATE_PER_S}/s to the real server (journalled in SQLite), ${lat.length} drawn`);
  show('server applied → drawn in the page, ms', stats(lat));
} finally {
  await browser.close();
  await server.stop();
}
