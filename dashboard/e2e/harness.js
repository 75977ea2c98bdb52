// What the browser tests run against: the real eoc-server binary on a free
// port with a temporary data directory, a real mosquitto started from the
// project's config/mosquitto/eoc.conf with the password file and ACL that
// the server's user store generates (as tests/support/mosquitto.rs does:
// only the listener, file paths and log destination are rewritten), and
// Debian's Chromium driven by playwright-core. Users and tokens are made
// as an administrator makes them: the first chair's token from
// DATA/first-chair.token, the others with `eoc-server user add`. Every wait
// has a deadline and waits on the event itself (a port opening, a line
// arriving, a condition in the page), never on a fixed sleep.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where screenshots go (gitignored). */
export const ARTIFACTS = join(ROOT, 'dashboard', 'test-artifacts');

/** How long one wait may take. */
export const WAIT_MS = 20_000;

/** Chromium flags for a quiet headless run with no network of its own. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A free TCP port on 127.0.0.1 (bound, read and released). */
export function freePort() {
  return new Promise((res, rej) => {
    const server = net.createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
  });
}

function portOpen(port) {
  return new Promise((res) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      res(true);
    });
    socket.once('error', () => res(false));
  });
}

/** Waits until `check()` resolves truthy, polling every `everyMs`, failing after `ms` with `what`. */
export async function waitFor(what, check, { ms = WAIT_MS, everyMs = 50 } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function currentUser() {
  return execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
}

/**
 * The project's eoc.conf with the port, persistence and log of a test
 * broker, and the password file and ACL generated in `brokerDir` (the
 * server's DATA/mosquitto).
 */
export function testConf(port, dir, brokerDir) {
  const source = join(ROOT, 'config', 'mosquitto', 'eoc.conf');
  const replace = {
    listener: `listener ${port} 127.0.0.1`,
    password_file: `password_file ${join(brokerDir, 'passwd')}`,
    acl_file: `acl_file ${join(brokerDir, 'acl')}`,
    persistence_location: `persistence_location ${join(dir, 'data')}/`,
    log_dest: `log_dest file ${join(dir, 'mosquitto.log')}`,
  };
  const seen = new Set();
  const lines = readFileSync(source, 'utf8')
    .split('\n')
    .map((line) => {
      const key = line.trim().split(/\s+/)[0];
      if (key in replace && !line.trim().startsWith('#')) {
        if (seen.has(key)) throw new Error(`${source} has more than one ${key} line`);
        seen.add(key);
        return replace[key];
      }
      return line;
    });
  for (const key of Object.keys(replace)) {
    if (!seen.has(key)) throw new Error(`${source} has no ${key} line`);
  }
  lines.push(`user ${currentUser()}`);
  return lines.join('\n');
}

/**
 * A mosquitto broker on `port` (from {@link freePort}) authenticating
 * against the files the user store of `server` (a {@link startServer})
 * generates: every user signs in with its name and token.
 * `reload()` applies users added since (SIGHUP, as an administrator does
 * after `eoc-server user add`).
 */
export async function startMosquitto(server, port) {
  const dir = mkdtempSync(join(os.tmpdir(), 'eoc-mqtt-'));
  mkdirSync(join(dir, 'data'));
  const conf = join(dir, 'eoc.conf');
  writeFileSync(conf, testConf(port, dir, join(server.dataDir, 'mosquitto')));
  const child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  let exited = null;
  child.once('exit', (code) => {
    exited = code;
  });
  await waitFor(`mosquitto on port ${port}`, async () => {
    if (exited !== null) throw new Error(`mosquitto exited with ${exited}: ${readLog(dir)}`);
    return portOpen(port);
  });
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    log: () => readLog(dir),
    /** Re-reads the password file and ACL; resolves once the broker's log says so. */
    async reload() {
      const reloads = () => (readLog(dir).match(/Reloading config/g) || []).length;
      const before = reloads();
      child.kill('SIGHUP');
      await waitFor('mosquitto to reload its configuration', () => reloads() > before);
    },
    stop() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(dir) {
  try {
    return readFileSync(join(dir, 'mosquitto.log'), 'utf8');
  } catch {
    return '';
  }
}

/** The eoc-server binary built by `cargo build -p eoc-server`. */
export function serverBinary() {
  if (process.env.EOC_SERVER_BIN) return process.env.EOC_SERVER_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
  const bin = join(target, 'debug', 'eoc-server');
  if (!existsSync(bin)) throw new Error(`no server binary at ${bin}: run cargo build -p eoc-server first`);
  return bin;
}

/** Runs `eoc-server user …` on `dataDir` and returns what it prints (a token, for add and rotate). */
export function userCommand(dataDir, ...args) {
  return execFileSync(serverBinary(), ['user', ...args, '--data', dataDir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/**
 * The real server on a free port, run from a temporary directory (so it
 * proves it needs nothing from the working directory but the scenario it
 * is given), on an empty data directory: its first start makes the chair
 * `chair` and writes its token to DATA/first-chair.token. With `mqttPort`
 * it connects to a broker there as its own account (from the user store),
 * retrying until {@link startMosquitto} opens it; `waitMqtt()` waits for
 * that. Resolves when `/readyz` says ready.
 */
export async function startServer({ mqttPort = null, env = {} } = {}) {
  const dir = mkdtempSync(join(os.tmpdir(), 'eoc-server-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const args = [
    '--http', `127.0.0.1:${port}`,
    '--data', dataDir,
    '--scenario', join(ROOT, 'config', 'scenarios', 'tajikistan'),
  ];
  if (mqttPort) args.push('--mqtt', `mqtt://127.0.0.1:${mqttPort}`);
  else args.push('--no-mqtt');
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  let child = null;
  let exited = null;

  async function readyz() {
    try {
      const r = await fetch(`${base}/readyz`);
      return r.status === 200 ? await r.json() : null;
    } catch {
      return null;
    }
  }

  async function spawnServer() {
    exited = null;
    child = spawn(serverBinary(), args, {
      cwd: dir,
      // EOC_SERVER_BIN names the binary for this harness; the server itself
      // refuses EOC_ variables it does not know.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'EOC_SERVER_BIN')), RUST_LOG: 'warn', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr.on('data', (d) => {
      log = (log + d.toString()).slice(-20_000);
    });
    child.once('exit', (code) => {
      exited = code ?? 'signal';
    });
    await waitFor('the server to be ready', async () => {
      if (exited !== null) throw new Error(`eoc-server exited with ${exited}:\n${log}`);
      return readyz();
    }, { ms: 60_000, everyMs: 100 });
  }

  async function stopServer() {
    if (exited !== null) return;
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const killed = await Promise.race([done.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]);
    if (!killed) {
      child.kill('SIGKILL');
      await done;
    }
  }

  await spawnServer();
  return {
    base,
    port,
    dataDir,
    log: () => log,
    /** The token the first start wrote for the chair `chair`. */
    firstChairToken: () => readFileSync(join(dataDir, 'first-chair.token'), 'utf8').trim(),
    /** `eoc-server user add NAME --role ROLE [--team T] [--site S…]`: the new user's token. */
    addUser(name, role, { team, sites = [] } = {}) {
      const extra = [...(team ? ['--team', team] : []), ...sites.flatMap((s) => ['--site', s])];
      return userCommand(dataDir, 'add', name, '--role', role, ...extra);
    },
    /** `eoc-server user revoke NAME`, while the server runs. */
    revoke: (name) => userCommand(dataDir, 'revoke', name),
    /** Waits until the MQTT edge is connected and subscribed. */
    waitMqtt: () => waitFor('the server\'s mqtt edge to connect', async () => (await readyz())?.mqtt?.state === 'connected', { ms: 60_000, everyMs: 100 }),
    /** Stops the server (SIGTERM: it flushes its journal) without removing its data. */
    halt: stopServer,
    /** Starts it again on the same port and data directory. */
    resume: spawnServer,
    async stop() {
      await stopServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Publishes one QoS 1 message with mosquitto_pub as user `{name, token}` (the token is its broker password). */
export function publish(broker, user, topic, body) {
  execFileSync('mosquitto_pub', [
    '-h', '127.0.0.1', '-p', String(broker.port), '-u', user.name, '-P', user.token,
    '-q', '1', '-t', topic, '-m', JSON.stringify(body),
  ]);
}

/**
 * Subscribes with mosquitto_sub as user `{name, token}` to `topic` and collects every
 * message. `next(pred)` resolves with the first message (parsed JSON)
 * matching `pred`; `ready` resolves once the subscription is in place.
 */
export function subscribe(broker, user, topic) {
  const messages = [];
  const waiters = [];
  // stdbuf: mosquitto_sub block-buffers stdout into a pipe, which would
  // hold back the SUBACK line and payloads until it exits.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub',
    '-h', '127.0.0.1', '-p', String(broker.port), '-u', user.name, '-P', user.token,
    '-q', '1', '-t', topic, '-i', `e2e-${user.name}-${process.pid}`, '-d',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buffer = '';
  let subscribed;
  const ready = new Promise((r) => {
    subscribed = r;
  });
  // With -d the client's protocol log (CONNACK, SUBACK) is interleaved
  // with the payloads on stdout; payloads are the JSON lines.
  child.stdout.on('data', (d) => {
    buffer += d.toString();
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.includes('SUBACK')) subscribed();
      if (!line.startsWith('{')) continue; // -d debug lines
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      messages.push(msg);
      for (const w of [...waiters]) {
        if (w.pred(msg)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(msg);
        }
      }
    }
  });
  return {
    messages,
    ready,
    next(pred, ms = WAIT_MS) {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => {
          if (waiters.includes(w)) reject(new Error(`no message on ${topic} matched within ${ms} ms; got ${JSON.stringify(messages)}`));
        }, ms);
      });
    },
    stop: () => child.kill('SIGTERM'),
  };
}

/** Launches Debian's Chromium. */
export async function launchBrowser() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** Saves a screenshot of `page` as `test-artifacts/{name}.png`. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Signs in on the login screen with `token` and waits for the live map. */
export async function signIn(page, base, token) {
  await page.goto(`${base}/`);
  await page.fill('#login-token', token);
  await page.click('form.login button[type=submit]');
  await page.waitForFunction(() => window.__eoc && window.__eoc.store.seq !== null && window.__eoc.inspect().villages > 0, null, { timeout: WAIT_MS });
}

/** The RFC 3339 time now, for message envelopes. */
export function nowIso() {
  return new Date().toISOString();
}
