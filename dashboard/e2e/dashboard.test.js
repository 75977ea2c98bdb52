// End-to-end: the real eoc-server and a real mosquitto, the dashboard in
// Debian's Chromium. The steps run in order against one server, as an EOC
// shift would: a wrong token is refused; the chair signs in with the token
// the server's first start wrote and issues an earthquake; field reports
// come in over MQTT; an operator sends a team, the team's phone receives it,
// and the operator accepts an engine proposal (auto-assign is off, so the
// engine proposes and people decide); a viewer sees no write tools and the
// server refuses what it forces; the chair reads the refusals in the audit
// trail; the server restarts; the chair's revoked token sends the page back
// to the login screen on its next call, and an operator's page left alone
// follows when the server closes its WebSocket.
//
// Run: cargo build -p eoc-server && (cd dashboard && npm ci && npm run e2e)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  ROOT,
  WAIT_MS,
  freePort,
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

/** Whether the page shows the login screen (and not the map). */
const onLogin = () => document.body.dataset.view === 'login';

describe('the dashboard against a live server', { timeout: 15 * STEP_MS }, () => {
  let broker;
  let server;
  let browser;
  let page;
  const shared = {};
  /** `{name, token}` of each user, as `eoc-server user add` made them. */
  const users = {};

  /** A responder account for `teamId` (its phone), added while everything runs; the broker is reloaded to know it. */
  async function responder(teamId) {
    if (!users[teamId]) {
      users[teamId] = { name: teamId, token: server.addUser(teamId, 'responder', { team: teamId }) };
      await broker.reload();
    }
    return users[teamId];
  }

  before(async () => {
    // The server starts first, on an empty data directory, as in a
    // deployment: it makes the first chair and the broker's files; the
    // administrator adds the others; then the broker starts on those files.
    const mqttPort = await freePort();
    server = await startServer({ mqttPort, env: { EOC_ENGINE__AUTO_ASSIGN: 'false' } });
    users.chair = { name: 'chair', token: server.firstChairToken() };
    users.operator = { name: 'operator-1', token: server.addUser('operator-1', 'operator') };
    users.viewer = { name: 'viewer-1', token: server.addUser('viewer-1', 'viewer') };
    broker = await startMosquitto(server, mqttPort);
    await server.waitMqtt();
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

  it('the login screen asks for the token only, and a wrong token gets the server\'s reason', { timeout: STEP_MS }, async () => {
    await page.goto(`${server.base}/`);
    await page.waitForSelector('form.login');
    assert.equal(await page.getAttribute('#login-token', 'type'), 'password');
    assert.equal(await page.locator('form.login input').count(), 1, 'no name field: the name comes with the token');
    assert.equal(await page.locator('form.login select').count(), 0, 'no role picker: the role comes with the token');

    // A token of the right shape that no user holds.
    const forged = `eoc_${'a'.repeat(12)}_${'B'.repeat(43)}`;
    await page.fill('#login-token', forged);
    await page.click('form.login button[type=submit]');
    await page.waitForFunction(() => /token is not valid/.test(document.querySelector('#login-error').textContent), null, { timeout: WAIT_MS });
    assert.equal(await page.textContent('#login-error'), 'Not signed in: the token is not valid');
    // Something that is not a token at all.
    await page.fill('#login-token', 'hunter2');
    await page.click('form.login button[type=submit]');
    await page.waitForFunction(() => /malformed/.test(document.querySelector('#login-error').textContent), null, { timeout: WAIT_MS });
    assert.match(await page.textContent('#login-error'), /^Not signed in: the credentials are malformed: not an eoc token$/);
    assert.equal(await page.evaluate(onLogin), true, 'still on the login screen');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('eoc.session')), null, 'a refused token is not kept');
    await screenshot(page, '01-login-refused');
  });

  it('the chair signs in with the first start\'s token: name and role from the server, the chair\'s tools', { timeout: STEP_MS }, async () => {
    await signIn(page, server.base, users.chair.token);
    const seen = await page.evaluate(() => window.__eoc.inspect());
    assert.equal(seen.villages, 2669, 'every village of the scenario is on the map');
    assert.equal(seen.teams, 68);
    assert.equal(await page.textContent('#who'), 'chair (Chair)');
    assert.deepEqual(await page.evaluate(() => window.__eoc.me), { name: 'chair', role: 'chair', sites: [] });
    assert.equal(await page.isVisible('form.chair'), true, 'the chair sees the alert tools');
    assert.equal(await page.isVisible('#tools section.operator'), true, 'a chair also assigns');
    await page.waitForSelector('#audit:not([hidden]) #board-audit', { timeout: WAIT_MS });
    const stored = await page.evaluate(() => JSON.parse(sessionStorage.getItem('eoc.session')));
    assert.deepEqual(stored, { token: users.chair.token }, 'only the token is kept, for the tab only');
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
    publish(broker, users.operator, `eoc/v1/sites/${siteId}/capacity`, {
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
    publish(broker, await responder(teamId), `eoc/v1/teams/${teamId}/position`, {
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
    await signIn(page, server.base, users.operator.token);
    assert.equal(await page.textContent('#who'), 'operator-1 (Operator)');
    assert.equal(await page.isVisible('form.chair'), false, 'an operator has no alert tools');
    assert.equal(await page.locator('#board-alerts button').count(), 0, 'nor edit or cancel buttons on alerts');
    await page.waitForSelector('#audit:not([hidden]) #board-audit', { timeout: WAIT_MS });
    await page.waitForSelector('#board-impact button[data-village-id]', { timeout: WAIT_MS });
    const village = shared.allocation.village;
    await page.click(`#board-impact button[data-village-id="${village.village_id}"]`);
    const first = page.locator('#tools button[data-assign]').first();
    await first.waitFor({ timeout: WAIT_MS });
    const teamId = await first.getAttribute('data-assign');

    const team = await responder(teamId);
    const phone = subscribe(broker, team, `eoc/v1/teams/${teamId}/tasks`);
    try {
      await phone.ready;
      await first.click();
      const task = await phone.next((m) => m.team_id === teamId && m.village_id === village.village_id && m.state === 'assigned');
      assert.equal(task.alert_id, 'eq-e2e-rasht');
      const last = task.history.at(-1);
      assert.equal(last.by, 'operator-1', 'the assignment is recorded as the token\'s owner\'s');
      await page.waitForSelector(`#board-tasks li[data-task-id="${task.task_id}"][data-state="assigned"]`, { timeout: WAIT_MS });
      await screenshot(page, '06-task-assigned');

      // The team acknowledges from its phone, on its own team's topic; the board follows live.
      publish(broker, team, `eoc/v1/teams/${teamId}/tasks/${task.task_id}/ack`, { v: 1, id: `${teamId}:e2e-ack`, ts: nowIso(), state: 'acknowledged' });
      await page.waitForSelector(`#board-tasks li[data-task-id="${task.task_id}"][data-state="acknowledged"]`, { timeout: WAIT_MS });
      await screenshot(page, '07-task-acknowledged');
    } finally {
      phone.stop();
    }
  });

  it('the operator accepts the engine\'s proposal and the task is assigned', { timeout: STEP_MS }, async () => {
    // Auto-assign is off: the earthquake's dispatch left proposals for people to confirm.
    const accept = page.locator('#board-tasks li[data-state="proposed"] button[data-accept]').first();
    await accept.waitFor({ timeout: WAIT_MS });
    const proposedId = await accept.getAttribute('data-accept');
    const proposal = await page.evaluate((id) => window.__eoc.store.tasks.get(id), proposedId);
    assert.equal(proposal.state, 'proposed');
    assert.equal(proposal.history.at(-1).by, 'eoc', 'the engine proposed it');
    await screenshot(page, '08-proposal');

    await accept.click();
    const assigned = await page.waitForFunction(
      (p) => [...window.__eoc.store.tasks.values()].find((t) => t.task_id !== p.task_id && t.team_id === p.team_id && t.village_id === p.village_id && t.state === 'assigned'),
      proposal,
      { timeout: WAIT_MS },
    ).then((handle) => handle.jsonValue());
    assert.equal(assigned.alert_id, proposal.alert_id);
    assert.equal(assigned.history.at(-1).by, 'operator-1', 'accepted by the operator');
    await page.waitForSelector(`#board-tasks li[data-task-id="${assigned.task_id}"][data-state="assigned"]`, { timeout: WAIT_MS });
    await page.waitForSelector(`#board-tasks li[data-task-id="${proposedId}"]:not([data-state="proposed"])`, { timeout: WAIT_MS });
    assert.equal(await page.locator(`#board-tasks button[data-accept="${proposedId}"]`).count(), 0, 'the proposal is no longer open');
    assert.match(await page.textContent('#tools .result'), new RegExp(`Task sent to ${proposal.team_id}`));
    await screenshot(page, '09-proposal-accepted');
  });

  it('a viewer sees no write tools, and the server refuses what the page is made to send', { timeout: STEP_MS }, async () => {
    await page.click('#sign-out');
    await signIn(page, server.base, users.viewer.token);
    assert.equal(await page.textContent('#who'), 'viewer-1 (Viewer, read only)');
    assert.equal(await page.isVisible('#tools'), false, 'no tools panel');
    assert.equal(await page.isVisible('#audit'), false, 'no audit trail');
    assert.equal(await page.locator('form.chair, #tools button, [data-accept], [data-reassign], [data-assign]').count(), 0);
    await page.waitForSelector('#board-alerts li.alert.actual', { timeout: WAIT_MS });
    assert.equal(await page.locator('#board-alerts button').count(), 0, 'no edit or cancel on alerts');
    await page.waitForSelector('#board-tasks li.task', { timeout: WAIT_MS });
    assert.equal(await page.locator('#board-tasks button').count(), 0, 'no accept or reassign on tasks');
    await screenshot(page, '10-viewer');

    // Forced: the page's own client, with the viewer's token, sends what
    // the tools would. The server refuses each, naming the field and why.
    const forced = await page.evaluate(async ([teamId, villageId]) => {
      const { api } = window.__eoc;
      const attempt = (p) => p.then(() => ({ status: 200 }), (e) => ({ status: e.status, code: e.code, field: e.field, message: e.message }));
      return {
        alert: await attempt(api.post('/api/v1/alerts', {
          msg_type: 'alert', alert_id: 'eq-forced-by-viewer', status: 'actual', hazard: 'earthquake', severity: 'severe',
          urgency: 'immediate', certainty: 'observed', earthquake: { lat: 38.56, lon: 68.78, magnitude: 6 },
        })),
        assign: await attempt(api.post('/api/v1/tasks', { team_id: teamId, village_id: villageId, alert_id: 'eq-e2e-rasht' })),
        audit: await attempt(api.get('/api/v1/audit?outcome=refused&limit=50')),
      };
    }, [TEAM_IDS[2], shared.allocation.village.village_id]);
    assert.deepEqual(forced.alert, {
      status: 403, code: 'forbidden', field: 'alert_id',
      message: 'only a chair may issue, update or cancel alert eq-forced-by-viewer; viewer-1 is a viewer',
    });
    assert.equal(forced.assign.status, 403);
    assert.equal(forced.assign.field, 'team_id');
    assert.match(forced.assign.message, /only an operator or chair may assign/);
    assert.equal(forced.audit.status, 403);
    assert.match(forced.audit.message, /only operators and chairs read the audit trail/);
    assert.equal(await page.evaluate(onLogin), false, 'a refusal is not a sign-out');
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.has('eq-forced-by-viewer')), false);
    shared.forcedAlertMessage = forced.alert.message;
  });

  it('the chair draws an exercise flood polygon: hatched, bannered, then cancelled', { timeout: STEP_MS }, async () => {
    await page.click('#sign-out');
    await signIn(page, server.base, users.chair.token);
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
    await screenshot(page, '11-exercise-flood');

    await page.click('#board-alerts li.alert.exercise button.danger');
    await page.waitForSelector('#board-alerts li.alert.exercise', { state: 'detached', timeout: WAIT_MS });
    await page.waitForSelector('#exercise-banner', { state: 'hidden', timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.get('flood-e2e-drill').active), false);
    assert.equal(await page.evaluate(() => window.__eoc.store.alerts.get('eq-e2e-rasht').active), true, 'the real alert stays');
  });

  it('the chair reads the refusals in the audit trail: the viewer\'s forced writes and the wrong tokens', { timeout: STEP_MS }, async () => {
    await page.click('#audit button[name=refresh-audit]');
    const row = '#board-audit tr[data-outcome="refused"][data-by="viewer-1"][data-code="forbidden"]';
    await page.waitForSelector(row, { timeout: WAIT_MS });
    const viewerRows = await page.locator(row).allTextContents();
    assert.ok(viewerRows.some((text) => text.includes('alert_id: ' + shared.forcedAlertMessage)), viewerRows.join('\n'));
    assert.ok(viewerRows.some((text) => /task_assign/.test(text)), 'the forced assignment too');
    const anonymous = page.locator('#board-audit tr[data-by="unauthenticated"][data-code="unauthenticated"]');
    assert.ok(await anonymous.count() >= 2, 'both wrong tokens at the login screen');
    assert.match(await anonymous.first().textContent(), /no valid token/);
    await page.locator('#audit').scrollIntoViewIfNeeded();
    await screenshot(page, '12-audit-refusals');

    // Every outcome, newest first: the exercise's cancellation is there, accepted.
    await page.selectOption('#audit select[name=outcome]', 'all');
    await page.waitForSelector('#board-audit tr[data-outcome="accepted"][data-by="chair"]', { timeout: WAIT_MS });
    assert.match(await page.locator('#board-audit tbody tr').first().textContent(), /alert_cancel/);
  });

  it('a server restart shows the connection-lost banner, then resynchronises without a reload', { timeout: STEP_MS }, async () => {
    const before = await page.evaluate(() => ({ seq: window.__eoc.store.seq, snapshots: window.__eoc.store.snapshots }));
    await page.evaluate(() => {
      window.__marker = 'still the same page';
    });
    await server.halt();
    await page.waitForSelector('#conn-banner:not([hidden])', { timeout: WAIT_MS });
    await page.waitForFunction(() => /Connection lost — reconnecting/.test(document.querySelector('#conn-banner').textContent), null, { timeout: WAIT_MS });
    await screenshot(page, '13-connection-lost');

    await server.resume();
    // A change made while the page was away arrives with the fresh snapshot.
    const teamId = TEAM_IDS[1];
    const r = await fetch(`${server.base}/api/v1/teams/${teamId}/status`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${users.operator.token}` },
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
    assert.equal(await page.evaluate(onLogin), false, 'still signed in');
    await screenshot(page, '14-reconnected');
  });

  it('revoking the chair\'s token with `eoc-server user revoke` sends the page back to login on its next call', { timeout: STEP_MS }, async () => {
    // The next call will be a preview of an earthquake.
    await page.selectOption('form.chair select[name=hazard]', 'earthquake');
    await page.fill('form.chair input[name=lat]', '38.56');
    await page.fill('form.chair input[name=lon]', '68.78');
    server.revoke('chair');
    // The page may already be leaving (its WebSocket is closed within a
    // ping interval too), so the click does not wait for the button.
    await page.evaluate(() => document.querySelector('form.chair button[name=preview]')?.click());
    await page.waitForFunction(onLogin, null, { timeout: WAIT_MS });
    await page.waitForSelector('#login-error', { timeout: WAIT_MS });
    assert.equal(
      await page.textContent('#login-error'),
      'You were signed out: the token was revoked or rotated. Sign in again with a valid token.',
    );
    assert.equal(await page.evaluate(() => sessionStorage.getItem('eoc.session')), null, 'the dead token is forgotten');
    assert.equal(await page.inputValue('#login-token'), '');
    await screenshot(page, '15-revoked');

    // The same token at the login screen gets the same reason.
    await page.fill('#login-token', users.chair.token);
    await page.click('form.login button[type=submit]');
    await page.waitForFunction(() => /^Not signed in: the token was revoked or rotated$/.test(document.querySelector('#login-error').textContent), null, { timeout: WAIT_MS });
  });

  it('a page left alone notices its revoked token too: the server closes the WebSocket (1008) and the page returns to login', { timeout: STEP_MS }, async () => {
    await signIn(page, server.base, users.operator.token);
    // Note how the connection ends, in storage that outlives the reload.
    await page.evaluate(() => {
      window.__eoc.live.socket().addEventListener('close', (e) => sessionStorage.setItem('e2e.close', String(e.code)));
    });
    server.revoke('operator-1');
    // The server checks the token at each ping (every 20 s); nothing is clicked.
    await page.waitForFunction(onLogin, null, { timeout: 30_000, polling: 200 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('e2e.close')), '1008', 'closed by the server for policy');
    assert.equal(await page.textContent('#login-error'), 'You were signed out: the token was revoked or rotated. Sign in again with a valid token.');
    assert.deepEqual(shared.pageErrors || [], [], 'the page threw no errors');
  });
});
