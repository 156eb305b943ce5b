'use strict';
// Shared by demo-page.test.js and docs-screenshot.js: start/stop `imrelay demo`, launch
// Debian's Chromium through playwright-core (no browser download), small REST helpers.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const IMRELAY_BIN = process.env.IMRELAY_BIN
  ? path.resolve(REPO_ROOT, process.env.IMRELAY_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'imrelay');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const STARTUP_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;

const { withTimeout } = require('../jslib/wait.js');

const running = new Set();
// Safety net: never leave a daemon behind, even if the test process dies.
process.on('exit', () => {
  for (const proc of running) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
});

/**
 * Starts `imrelay demo --listen 127.0.0.1:0 [--quiet]` and waits for its banner.
 * The environment passes through unchanged: with IMRELAY_WEB_DIR set the daemon serves
 * the page from that folder, else the copy embedded at build time.
 * Returns { proc, url, key, stderr: string[], stop(): Promise<{code, signal}> }.
 */
async function startDemo({ quiet = true } = {}) {
  if (!fs.existsSync(IMRELAY_BIN)) {
    throw new Error(`imrelay binary not found at ${IMRELAY_BIN} (build it with \`cargo build\` or set IMRELAY_BIN)`);
  }
  const args = ['demo', '--listen', '127.0.0.1:0'];
  if (quiet) args.push('--quiet');
  const proc = spawn(IMRELAY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  running.add(proc);
  const stderr = [];
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderr.push(chunk);
    if (stderr.length > 2000) stderr.splice(0, 1000);
  });
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  exit.then(() => running.delete(proc));
  const banner = [];
  const lines = readline.createInterface({ input: proc.stdout });
  const ready = new Promise((resolve, reject) => {
    let addr;
    lines.on('line', (line) => {
      banner.push(line);
      // "  imrelay          http://127.0.0.1:PORT   (API key: KEY)"
      const m = /^\s*imrelay\s+(http:\/\/127\.0\.0\.1:\d+)\s+\(API key: ([^)]+)\)/.exec(line);
      if (m) addr = { url: m[1], key: m[2] };
      if (line.includes('Ctrl-C stops everything.')) {
        if (addr) resolve(addr);
        else reject(new Error(`banner ended without the imrelay URL line:\n${banner.join('\n')}`));
      }
    });
    exit.then(({ code, signal }) => reject(new Error(`imrelay demo exited (${code ?? signal}) before its banner ended`)));
    proc.on('error', reject);
  });
  let addr;
  try {
    addr = await withTimeout(ready, STARTUP_TIMEOUT_MS, "the demo banner ('Ctrl-C stops everything.')");
  } catch (err) {
    proc.kill('SIGKILL');
    err.message += `\nstdout:\n${banner.join('\n')}\nimrelay stderr:\n${stderr.join('').slice(-4000)}`;
    throw err;
  }
  async function stop() {
    if (proc.exitCode !== null || proc.signalCode !== null) return { code: proc.exitCode, signal: proc.signalCode };
    proc.kill('SIGINT');
    try {
      return await withTimeout(exit, STOP_TIMEOUT_MS, 'imrelay demo to exit after SIGINT');
    } catch (err) {
      proc.kill('SIGKILL');
      await exit;
      throw err;
    }
  }
  return { proc, stderr, stop, ...addr };
}

function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_BIN`);
  }
  return withTimeout(
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: STARTUP_TIMEOUT_MS }),
    STARTUP_TIMEOUT_MS + 5000,
    `${CHROMIUM} to start`,
  );
}

async function httpJson(method, url, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** The demo's client token for a user (POST /demo/login/{user}). */
async function demoLogin(demo, user) {
  const r = await httpJson('POST', `${demo.url}/demo/login/${user}`);
  if (r.status !== 200 || !r.json || !r.json.client_token) throw new Error(`demo login ${user}: ${r.status} ${r.text}`);
  return r.json.client_token;
}

/** Rocket.Chat REST as a user through the demo proxy (ANY /demo/rc/{path}). */
async function demoRc(demo, token, method, rcPath, body) {
  const r = await httpJson(method, `${demo.url}/demo/rc/${rcPath}`, { token, body });
  if (r.status !== 200 || !r.json || r.json.success === false) throw new Error(`${method} /demo/rc/${rcPath}: ${r.status} ${r.text}`);
  return r.json;
}

module.exports = { REPO_ROOT, IMRELAY_BIN, CHROMIUM, withTimeout, startDemo, launchBrowser, httpJson, demoLogin, demoRc };
