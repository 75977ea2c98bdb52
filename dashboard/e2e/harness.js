// What the browser tests run against: a real mosquitto started from the
// project's config/mosquitto/eoc.conf (as tests/support/mosquitto.rs does:
// only the listener, file paths and log destination are rewritten), the
// real eoc-server binary on a free port with a temporary data directory,
// and Debian's Chromium driven by playwright-core. Every wait has a
// deadline and waits on the event itself (a port opening, a line arriving,
// a condition in the page), never on a fixed sleep.

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

/** Password of every test broker user. */
export const PASSWORD = 'test-password';

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

/** The project's eoc.conf with the port, paths and log of a test broker. */
export function testConf(port, dir) {
  const source = join(ROOT, 'config', 'mosquitto', 'eoc.conf');
  const replace = {
    listener: `listener ${port} 127.0.0.1`,
    password_file: `password_file ${join(dir, 'passwd')}`,
    acl_file: `acl_file ${join(ROOT, 'config', 'mosquitto', 'acl')}`,
    persistence_location: `persistence_location ${join(dir, 'data')}/`,
    log_dest: `log_dest file ${join(dir, 'mosquitto.log')}`,
  };
  const seen = new Set();
  const lines = readFileSync(source, 'utf8')
    .split('\n')
    .map((line) => {
      const key = line.trim().split(/\s+/)[0];
      if (key in replace && !line.trim().startsWith('#')) {
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

/** A mosquitto broker on a free port with users `eoc-server`, `eoc-operator` and `users`. */
export async function startMosquitto(users = []) {
  const dir = mkdtempSync(join(os.tmpdir(), 'eoc-mqtt-'));
  mkdirSync(join(dir, 'data'));
  const port = await freePort();
  const passwd = join(dir, 'passwd');
  ['eoc-server', 'eoc-operator', ...users].forEach((user, i) => {
    execFileSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', passwd, user, PASSWORD]);
  });
  const conf = join(dir, 'eoc.conf');
  writeFileSync(conf, testConf(port, dir));
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

/**
 * The real server on a free port, run from a temporary directory (so it
 * proves it needs nothing from the working directory but the scenario it
 * is given), connected to `broker`. Resolves when `/readyz` says ready and
 * the MQTT edge is connected.
 */
export async function startServer(broker, { env = {} } = {}) {
  const dir = mkdtempSync(join(os.tmpdir(), 'eoc-server-'));
  const port = await freePort();
  const args = [
    '--http', `127.0.0.1:${port}`,
    '--data', join(dir, 'data'),
    '--scenario', join(ROOT, 'config', 'scenarios', 'tajikistan'),
  ];
  if (broker) args.push('--mqtt', broker.url);
  else args.push('--no-mqtt');
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  let child = null;
  let exited = null;

  async function spawnServer() {
    exited = null;
    child = spawn(serverBinary(), args, {
      cwd: dir,
      env: { ...process.env, RUST_LOG: 'warn', EOC_MQTT__USERNAME: 'eoc-server', EOC_MQTT__PASSWORD: PASSWORD, ...env },
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
      try {
        const r = await fetch(`${base}/readyz`);
        if (r.status !== 200) return false;
        const body = await r.json();
        return !broker || body.mqtt.state === 'connected';
      } catch {
        return false;
      }
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
    log: () => log,
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

/** Publishes one QoS 1 message with mosquitto_pub as `user`. */
export function publish(broker, user, topic, body) {
  execFileSync('mosquitto_pub', [
    '-h', '127.0.0.1', '-p', String(broker.port), '-u', user, '-P', PASSWORD,
    '-q', '1', '-t', topic, '-m', JSON.stringify(body),
  ]);
}

/**
 * Subscribes with mosquitto_sub as `user` to `topic` and collects every
 * message. `next(pred)` resolves with the first message (parsed JSON)
 * matching `pred`; `ready` resolves once the subscription is in place.
 */
export function subscribe(broker, user, topic) {
  const messages = [];
  const waiters = [];
  // stdbuf: mosquitto_sub block-buffers stdout into a pipe, which would
  // hold back the SUBACK line and payloads until it exits.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub',
    '-h', '127.0.0.1', '-p', String(broker.port), '-u', user, '-P', PASSWORD,
    '-q', '1', '-t', topic, '-i', `e2e-${user}-${process.pid}`, '-d',
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

/** Signs in on the login screen. */
export async function signIn(page, base, user, role) {
  await page.goto(`${base}/`);
  await page.fill('#login-user', user);
  await page.fill('#login-token', `token-of-${user}`);
  await page.selectOption('#login-role', role);
  await page.click('form.login button[type=submit]');
  await page.waitForFunction(() => window.__eoc && window.__eoc.store.seq !== null && window.__eoc.inspect().villages > 0, null, { timeout: WAIT_MS });
}

/** The RFC 3339 time now, for message envelopes. */
export function nowIso() {
  return new Date().toISOString();
}
