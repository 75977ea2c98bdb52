// End-to-end: the real eoc-server and a real mosquitto, the dashboard in
// Debian's Chromium. The steps run in order against one server, as an EOC
// shift would: the chair issues an earthquake, the field reports come in
// over MQTT, the operator sends a team and the team's phone receives it.
//
// Run: cargo build -p eoc-server && (cd dashboard && npm ci && npm run e2e)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  ROOT,
  WAIT_MS,
  launchBrowser,
  nowIso,
  publish,
  screenshot,
  signIn,
  startMosquitto,
  startServer,
  subscribe,
} from './harness.js';

/** Longest one step may take; a hung step fails instead of stalling CI. */
const STEP_MS = 90_000;

const TEAM_IDS = readFileSync(join(ROOT, 'config', 'scenarios', 'tajikistan', 'teams.csv'), 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((line) => line.split(',')[0]);

describe('the dashboard against a live server', { timeout: 10 * STEP_MS }, () => {
  let broker;
  let server;
  let browser;
  let page;
  const shared = {};

  before(async () => {
    broker = await startMosquitto(TEAM_IDS);
    server = await startServer(broker);
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    page.on('pageerror', (err) => {
      shared.pageErrors = [...(shared.pageErrors || []), err.message];
    });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    broker?.stop();
  });

  it('the login screen asks for a token and the page loads the map offline', { timeout: STEP_MS }, async () => {
    await page.goto(`${server.base}/`);
    await page.waitForSelector('form.login');
    assert.equal(await page.getAttribute('#login-token', 'type'), 'password');
    await screenshot(page, '01-login');
    await signIn(page, server.base, 'chair-1', 'chair');
    const seen = await page.evaluate(() => window.__eoc.inspect());
    assert.equal(seen.villages, 2669, 'every village of the scenario is on the map');
    assert.equal(seen.teams, 68);
    assert.match(await page.textContent('#who'), /chair-1/);
    assert.equal(await page.isVisible('form.chair'), true, 'the chair sees the alert tools');
    const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('eoc.session')).token);
    assert.equal(token, 'token-of-chair-1', 'the token is kept for the tab only');
  });

  it('the chair previews and issues an earthquake and sees the affected villages and the impact board', { timeout: STEP_MS }, async () => {
    // Clicking the map sets the epicentre; the exact values are then typed.
    const box = await page.locator('#map').boundingBox();
    await page.mouse.click(box.x + box.width * 0.55, box.y + box.height * 0.45);
    assert.notEqual(await page.inputValue('form.chair input[name=lat]'), '', 'a map click sets the epicentre');
    await page.fill('form.chair input[name=lat]', '39.02');
    await page.fill('form.chair input[name=lon]', '70.61');
    await page.fill('form.chair input[name=magnitude]', '6.8');
    await page.fill('form.chair input[name=depth_km]', '12');
    await page.fill('form.chair input[name=headline]', 'M6.8 earthquake in Rasht valley');
    await page.fill('form.chair input[name=alert_id]', 'eq-e2e-rasht');

    await page.click('form.chair button[name=preview]');
    await page.waitForSelector('form.chair .result[data-preview]', { timeout: WAIT_MS });
    const previewed = Number(await page.getAttribute('form.chair .result', 'data-preview'));
    assert.ok(previewed > 0, 'the preview finds affected villages');
    assert.match(await page.textContent('form.chair .result'), /Preview: [\d,]+ villages/);
    const before = await page.evaluate(() => window.__eoc.inspect());
    assert.equal(before.affected, 0, 'a preview changes nothing on the live map');
    await screenshot(page, '02-preview');

    await page.click('form.chair button[name=issue]');
    await page.waitForFunction(() => window.__eoc.inspect().affected > 0, null, { timeout: WAIT_MS });
    const seen = await page.evaluate(() => window.__eoc.inspect());
    assert.equal(seen.affected, previewed, 'the issued alert hits the villages the preview showed');
    assert.ok(seen.hazards > 1, 'the epicentre and its intensity rings are drawn');
    await page.waitForSelector('#board-alerts li.alert.actual', { timeout: WAIT_MS });
    assert.match(await page.textContent('#board-alerts'), /M6\.8 earthquake in Rasht valley/);
    await page.waitForSelector('#board-impact table.impact tfoot', { timeout: WAIT_MS });
    const impactText = await page.textContent('#board-impact');
    assert.match(impactText, /Rasht/, 'the district of the epicentre is in the impact table');
    assert.match(await page.textContent('#board-impact .impact-summary'), new RegExp(`^${previewed} villages`));
    await screenshot(page, '03-earthquake-issued');

    shared.allocation = await page.evaluate(() => {
      const impact = window.__eoc.store.impacts.get('eq-e2e-rasht');
      // An open site with room, nearest the epicentre: the one whose
      // manager reports next.
      const d = (s) => (s.lat - 39.02) ** 2 + (s.lon - 70.61) ** 2;
      const roomy = [...window.__eoc.store.sites.values()]
        .filter((s) => s.status === 'open' && s.occupancy + s.allocated < s.capacity / 2)
        .sort((a, b) => d(a) - d(b));
      return { site: roomy[0]?.site_id, allocated: impact.allocations.length, village: impact.villages[0] };
    });
    assert.ok(shared.allocation.allocated > 0, 'the engine allocated people to sites');
    assert.ok(shared.allocation.site, 'a site near the epicentre has room');
  });

  it('a capacity update over MQTT fills the site gauge without a reload', { timeout: STEP_MS }, async () => {
    const siteId = shared.allocation.site;
    const site = await page.evaluate((id) => window.__eoc.store.sites.get(id), siteId);
    assert.notEqual(await page.evaluate((id) => window.__eoc.inspect().site(id).level, siteId), 'full');
    publish(broker, 'eoc-operator', `eoc/v1/sites/${siteId}/capacity`, {
      v: 1, id: 'e2e-capacity-1', ts: nowIso(), capacity: site.capacity, occupancy: site.capacity, note: 'gym full',
    });
    await page.waitForFunction((id) => window.__eoc.inspect().site(id).level === 'full', siteId, { timeout: WAIT_MS });
    const gauge = await page.evaluate((id) => window.__eoc.inspect().site(id), siteId);
    assert.equal(gauge.gauge, 1, 'the square is filled to the top');
    await page.fill('#site-filter', siteId);
    const row = page.locator(`#board-sites tr[data-site-id="${siteId}"]`);
    await row.waitFor({ timeout: WAIT_MS });
    await page.waitForFunction((id) => /full/.test(document.querySelector(`#board-sites tr[data-site-id="${id}"]`)?.textContent || ''), siteId, { timeout: WAIT_MS });
    assert.match(await row.textContent(), /full/);
    await page.evaluate(([lat, lon]) => window.__eoc.map.focus(lat, lon, 11), [site.lat, site.lon]);
    await screenshot(page, '04-site-full');
  });

  it('a team position over MQTT moves its marker and shows its low battery', { timeout: STEP_MS }, async () => {
    const teamId = TEAM_IDS[0];
    const lat = 38.9;
    const lon = 70.1;
    publish(broker, teamId, `eoc/v1/teams/${teamId}/position`, {
      v: 1, id: `${teamId}:e2e-1`, ts: nowIso(), lat, lon, accuracy_m: 10, battery_pct: 12,
    });
    await page.waitForFunction(
      ([id, la, lo]) => {
        const m = window.__eoc.inspect().team(id);
        return m && Math.abs(m.lat - la) < 1e-6 && Math.abs(m.lon - lo) < 1e-6;
      },
      [teamId, lat, lon],
      { timeout: WAIT_MS },
    );
    const marker = await page.evaluate((id) => window.__eoc.inspect().team(id), teamId);
    assert.equal(marker.lowBattery, true, 'battery below 20 % is flagged');
    assert.equal(marker.stale, false, 'a fresh position is not stale');
    await page.waitForFunction((id) => /12 %/.test(document.querySelector(`#board-teams tr[data-team-id="${id}"]`)?.textContent || ''), teamId, { timeout: WAIT_MS });
    await page.evaluate(([la, lo]) => window.__eoc.map.focus(la, lo, 10), [lat, lon]);
    await screenshot(page, '05-team-moved');
  });

  it('the operator assigns a team in one click and the team phone receives the task', { timeout: STEP_MS }, async () => {
    await page.click('#sign-out');
    await signIn(page, server.base, 'operator-1', 'operator');
    assert.equal(await page.isVisible('form.chair'), false, 'an operator has no alert tools');
    await page.waitForSelector('#board-impact button[data-village-id]', { timeout: WAIT_MS });
    const village = shared.allocation.village;
    await page.click(`#board-impact button[data-village-id="${village.village_id}"]`);
    const first = page.locator('#tools button[data-assign]').first();
    await first.waitFor({ timeout: WAIT_MS });
    const teamId = await first.getAttribute('data-assign');

    const phone = subscribe(broker, teamId, `eoc/v1/teams/${teamId}/tasks`);
    try {
      await phone.ready;
      await first.click();
      const task = await phone.next((m) => m.team_id === teamId && m.village_id === village.village_id && m.state === 'assigned');
      assert.equal(task.alert_id, 'eq-e2e-rasht');
      const last = task.history.at(-1);
      assert.equal(last.by, 'operator-1', 'the assignment is recorded as the operator\'s');
      await page.waitForSelector(`#board-tasks li[data-task-id="${task.task_id}"][data-state="assigned"]`, { timeout: WAIT_MS });
      await screenshot(page, '06-task-assigned');

      // The team acknowledges from its phone; the board follows live.
      publish(broker, teamId, `eoc/v1/tasks/${task.task_id}/ack`, { v: 1, id: `${teamId}:e2e-ack`, ts: nowIso(), state: 'acknowledged' });
      await page.waitForSelector(`#board-tasks li[data-task-id="${task.task_id}"][data-state="acknowledged"]`, { timeout: WAIT_MS });
      await screenshot(page, '07-task-acknowledged');
    } finally {
      phone.stop();
    }
  });

  it('the chair draws an exercise flood polygon: hatched, bannered, then cancelled', { timeout: STEP_MS }, async () => {
    await page.click('#sign-out');
    await signIn(page, server.base, 'chair-1', 'chair');
    await page.selectOption('form.chair select[name=hazard]', 'flood');
    await page.selectOption('form.chair select[name=mode]', 'polygon');
    // Four corners around Bokhtar, clicked on the map.
    await page.evaluate(() => {
      window.__eoc.map.map.setView([37.84, 68.78], 10, { animate: false });
    });
    const box = await page.locator('#map').boundingBox();
    const corners = [[-120, -90], [120, -90], [120, 90], [-120, 90]];
    for (const [dx, dy] of corners) {
      await page.mouse.click(box.x + box.width / 2 + dx, box.y + box.height / 2 + dy);
    }
    assert.match(await page.textContent('form.chair'), /4 corners/);
    await page.selectOption('form.chair select[name=status]', 'exercise');
    await page.fill('form.chair input[name=headline]', 'Flood drill in Bokhtar');
    await page.fill('form.chair input[name=alert_id]', 'flood-e2e-drill');
    await page.click('form.chair button[name=issue]');
    await page.waitForSelector('#board-alerts li.alert.exercise', { timeout: WAIT_MS });
    await page.waitForSelector('#exercise-banner:not([hidden])', { timeout: WAIT_MS });
    assert.match(await page.textContent('#exercise-banner'), /EXERCISE — Flood drill in Bokhtar/);
    assert.match(await page.textContent('#board-alerts li.alert.exercise'), /EXERCISE/);
    await page.waitForFunction(() => [...window.__eoc.store.impacts.get('flood-e2e-drill')?.villages || []].length > 0, null, { timeout: WAIT_MS });
    await screenshot(page, '08-exercise-flood');

    await page.click('#board-alerts li.alert.exercise button.danger');
    await page.waitForSelector('#board-alerts li.alert.exercise', { state: 'detached', timeout: WAIT_MS });
    await page.waitForSelector('#exercise-banner', { state: 'hidden', timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.get('flood-e2e-drill').active), false);
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.get('eq-e2e-rasht').active), true, 'the real alert stays');
  });

  it('a server restart shows the connection-lost banner, then resynchronises without a reload', { timeout: STEP_MS }, async () => {
    const before = await page.evaluate(() => ({ seq: window.__eoc.store.seq, snapshots: window.__eoc.store.snapshots }));
    await page.evaluate(() => {
      window.__marker = 'still the same page';
    });
    await server.halt();
    await page.waitForSelector('#conn-banner:not([hidden])', { timeout: WAIT_MS });
    await page.waitForFunction(() => /Connection lost — reconnecting/.test(document.querySelector('#conn-banner').textContent), null, { timeout: WAIT_MS });
    await screenshot(page, '09-connection-lost');

    await server.resume();
    // A change made while the page was away arrives with the fresh snapshot.
    const teamId = TEAM_IDS[1];
    const r = await fetch(`${server.base}/api/v1/teams/${teamId}/status`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-EOC-User': teamId },
      body: JSON.stringify({ v: 1, id: `${teamId}:e2e-status`, ts: nowIso(), status: 'unavailable', battery_pct: 55 }),
    });
    assert.equal(r.status, 200);
    await page.waitForSelector('#conn-banner[hidden]', { state: 'attached', timeout: 30_000 });
    await page.waitForFunction((id) => window.__eoc.inspect().team(id)?.shape === 'square', teamId, { timeout: WAIT_MS });
    const after = await page.evaluate(() => ({ seq: window.__eoc.store.seq, snapshots: window.__eoc.store.snapshots, marker: window.__marker }));
    assert.equal(after.marker, 'still the same page', 'no reload');
    assert.ok(after.snapshots > before.snapshots, 'a fresh snapshot replaced the state');
    assert.ok(after.seq > before.seq, 'the state moved on past what the page had');
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.get('eq-e2e-rasht')?.active), true, 'the alert survived the restart');
    await screenshot(page, '10-reconnected');
    assert.deepEqual(shared.pageErrors || [], [], 'the page threw no errors');
  });
});
