'use strict';
// imrelay's SignalR hub against the official npm `@microsoft/signalr` 10.0.11, unchanged
// (shared protocol doc signalr.md §1, §2, §4, §5; the front end of §7.4).
//
// The connection is built exactly like the front end does it (§7.4):
//   new signalR.HubConnectionBuilder()
//     .withUrl(baseURL + "signalr", { headers, accessTokenFactory, transport: WebSockets })
//     .withAutomaticReconnect().withHubProtocol(new signalR.JsonHubProtocol()).build();
// plus only `logger` / `logMessageContent` (which the front end also sets) so the client's
// own trace ends up in the failure output.
//
// Two code paths of the client (§2, §6):
// - Node: the token goes as `Authorization: Bearer` on negotiate AND on the WebSocket upgrade
//   (the `headers` option is also sent on the upgrade);
// - browser, emulated as in §6: `process.release.name` is not "node", a fake `window.document`,
//   and a global `WebSocket` that, like a browser's, takes only a URL (so no headers at all on
//   the upgrade); the token travels as `?access_token=` on the WebSocket URL.
//
// The daemon: one `imrelay demo --listen 127.0.0.1:0` for the file ($IMRELAY_BIN, default
// <repo>/target/debug/imrelay), stopped with SIGINT. Fresh DM pairs (the first message of a DM
// inserts the recipient's subscription): carol -> alice (Node path), bob -> carol (browser path).
// The demo's bot DMs alice from bob every 5 s; every wait here filters on its own unique text.
//
// Run: `node --test` in tests/js. IMRELAY_TRACE=1 prints every HTTP request, WebSocket upgrade,
// frame and client log line.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const net = require('node:net');
const WS8 = require('ws');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const IMRELAY_BIN = process.env.IMRELAY_BIN
  ? path.resolve(REPO_ROOT, process.env.IMRELAY_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'imrelay');
const STARTUP_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 10000;
const WAIT_MS = 10000;
// withAutomaticReconnect() tries at 0 ms, then 2 s, 10 s (§5.1); a healthy daemon is
// back on the first attempt, the longer wait only makes a slow one a clear failure.
const RECONNECT_WAIT_MS = 15000;
const TRACE = Boolean(process.env.IMRELAY_TRACE);

// ---------------------------------------------------------------------------------------
// Capture: every HTTP request the client makes, every WebSocket upgrade and frame.

const t0 = Date.now();
const log = [];
function record(line) {
  const entry = `+${String(Date.now() - t0).padStart(6)}ms ${line}`;
  log.push(entry);
  if (log.length > 4000) log.splice(0, 2000);
  if (TRACE) console.log(entry);
}
// Frames as structured records, for protocol checks: { dir: 'S'|'C', sock, data }.
const frames = [];
let socketSerial = 0;

function tapWebSocketClass(Cls, label) {
  const proto = Cls.prototype;
  const origSend = proto.send;
  const origEmit = proto.emit;
  proto.send = function send(data, ...rest) {
    const s = typeof data === 'string' ? data : Buffer.from(data).toString();
    frames.push({ dir: 'C', sock: this.__tapId, data: s });
    record(`ws#${this.__tapId} C: ${JSON.stringify(s)}`);
    return origSend.call(this, data, ...rest);
  };
  proto.emit = function emit(event, ...args) {
    if (this.__tapId === undefined) this.__tapId = ++socketSerial;
    const id = this.__tapId;
    if (event === 'upgrade') {
      const res = args[0];
      const req = this._req; // still set while 'upgrade' is emitted (ws 7 and 8)
      const headers = req && typeof req.getHeaders === 'function' ? req.getHeaders() : {};
      record(`ws#${id} (${label}) GET ${req ? req.path : '?'} -> ${res.statusCode}; request headers ${JSON.stringify(headers)}`);
      this.__upgrade = { path: req ? req.path : '', headers };
      upgrades.push({ sock: id, label, path: req ? req.path : '', headers });
    } else if (event === 'unexpected-response') {
      const [req, res] = args;
      record(`ws#${id} (${label}) GET ${req.path} -> ${res.statusCode} (upgrade refused); request headers ${JSON.stringify(req.getHeaders())}`);
    } else if (event === 'message') {
      const s = String(args[0]);
      frames.push({ dir: 'S', sock: id, data: s });
      record(`ws#${id} S: ${JSON.stringify(s)}`);
    } else if (event === 'close') {
      record(`ws#${id} closed ${args[0]} ${String(args[1] || '')}`);
    } else if (event === 'error') {
      record(`ws#${id} error ${args[0] && args[0].message}`);
    }
    return origEmit.call(this, event, ...args);
  };
}
const upgrades = [];

// The `ws` the client requires in Node (its own copy, 7.x), resolved like the client does.
const signalRDir = path.dirname(require.resolve('@microsoft/signalr'));
const ClientWS = require(require.resolve('ws', { paths: [signalRDir] }));
tapWebSocketClass(ClientWS, 'node');
tapWebSocketClass(WS8, 'browser');

// The client's HTTP client captures `fetch` when a connection is built, so wrap it now.
const realFetch = globalThis.fetch;
const negotiations = []; // { url, headers, status, body }
globalThis.fetch = async function tappedFetch(input, init = {}) {
  const url = String(input && input.url ? input.url : input);
  const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
  const res = await realFetch(input, init);
  let body = '';
  try {
    body = await res.clone().text();
  } catch {
    body = '<unreadable>';
  }
  record(`HTTP ${init.method || 'GET'} ${url} headers ${JSON.stringify(headers)} body ${JSON.stringify(init.body ?? '')} -> ${res.status} ${body}`);
  if (url.includes('/negotiate')) negotiations.push({ url, headers, status: res.status, body });
  return res;
};

const signalR = require('@microsoft/signalr');

const clientLogger = {
  log(level, message) {
    record(`client[${signalR.LogLevel[level]}] ${message}`);
  },
};

// ---------------------------------------------------------------------------------------
// Helpers

const { withTimeout } = require('../jslib/wait.js');

let daemon; // { proc, url, key, stderr: string[], exit: Promise<{code, signal}> }

function diag() {
  const stderr = daemon ? daemon.stderr.join('').slice(-6000) : '';
  return `\n--- client log (HTTP, WebSocket, frames) ---\n${log.slice(-150).join('\n')}\n--- imrelay stderr tail ---\n${stderr}`;
}

async function withDiag(fn) {
  try {
    await fn();
  } catch (err) {
    err.message += diag();
    throw err;
  }
}

function startDaemon() {
  if (!fs.existsSync(IMRELAY_BIN)) {
    throw new Error(`imrelay binary not found at ${IMRELAY_BIN} (build it with \`cargo build\` or set IMRELAY_BIN)`);
  }
  const proc = spawn(IMRELAY_BIN, ['demo', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderr.push(chunk);
    if (stderr.length > 2000) stderr.splice(0, 1000);
  });
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
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
  return withTimeout(ready, STARTUP_TIMEOUT_MS, "the demo banner ('Ctrl-C stops everything.')")
    .then((addr) => ({ proc, stderr, exit, ...addr }))
    .catch((err) => {
      proc.kill('SIGKILL');
      err.message += `\nstdout:\n${banner.join('\n')}\nimrelay stderr:\n${stderr.join('').slice(-4000)}`;
      throw err;
    });
}

// Safety net: never leave a daemon behind, even if the test process dies.
process.on('exit', () => {
  if (daemon && daemon.proc.exitCode === null && daemon.proc.signalCode === null) daemon.proc.kill('SIGKILL');
});

async function api(method, route, body) {
  const headers = { Authorization: `Bearer ${daemon.key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await withTimeout(
    realFetch(`${daemon.url}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }),
    WAIT_MS,
    `${method} ${route}`,
  );
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  record(`backend ${method} ${route} -> ${res.status} ${text.slice(0, 300)}`);
  return { status: res.status, json, text };
}

async function login(user) {
  const r = await api('POST', `/api/v1/users/${user}/login`);
  assert.equal(r.status, 200, `login ${user}: ${r.text}`);
  assert.equal(r.json.username, user, r.text);
  assert.ok(typeof r.json.client_token === 'string' && r.json.client_token.length > 0, r.text);
  return r.json.client_token;
}

// A chat action as `from` through imrelay's Rocket.Chat proxy; returns Rocket.Chat's message.
async function postDm(from, to, text) {
  const r = await api('POST', `/api/v1/users/${from}/rc/chat.postMessage`, { channel: `@${to}`, text });
  assert.equal(r.status, 200, `chat.postMessage as ${from}: ${r.text}`);
  assert.equal(r.json.success, true, r.text);
  assert.equal(r.json.message.msg, text, r.text);
  return r.json.message;
}

function uniqueText(label) {
  return `signalr ${label} ${crypto.randomUUID().slice(0, 8)}`;
}

// The front end's connection (§7.4), verbatim apart from the logger.
const connections = new Set();
function buildConnection(token, { baseURL = `${daemon.url}/`, stateful = false } = {}) {
  const headers = { 'X-XSRF-TOKEN': token, Authorization: 'Bearer ' + token };
  const getAccessToken = () => token;
  const builder = new signalR.HubConnectionBuilder()
    .withUrl(baseURL + 'signalr', {
      headers,
      accessTokenFactory: () => getAccessToken(),
      transport: signalR.HttpTransportType.WebSockets,
      logger: clientLogger,
      logMessageContent: true,
    })
    .withAutomaticReconnect();
  // The front end's one change for loss-free reconnects (§5.3).
  const connection = (stateful ? builder.withStatefulReconnect() : builder)
    .withHubProtocol(new signalR.JsonHubProtocol())
    .build();
  connections.add(connection);
  return connection;
}

async function stopConnection(connection) {
  if (!connection) return;
  connections.delete(connection);
  await withTimeout(connection.stop(), WAIT_MS, 'connection.stop()');
}

// Buffers every invocation of the given targets, so a wait never misses an event that
// arrived before it started.
function inbox(connection, targets) {
  const got = [];
  const waiters = new Set();
  for (const target of targets) {
    connection.on(target, (...args) => {
      got.push({ target, args });
      for (const w of [...waiters]) w();
    });
  }
  return {
    got,
    wait(target, pred, what) {
      let check;
      const found = new Promise((resolve) => {
        check = () => {
          const hit = got.find((e) => e.target === target && pred(...e.args));
          if (hit) {
            waiters.delete(check);
            resolve(hit.args);
          }
        };
        waiters.add(check);
        check();
      });
      return withTimeout(found, WAIT_MS, what).finally(() => waiters.delete(check));
    },
  };
}

// Hub protocol records the daemon sent since frame index `from` (§4.1).
function serverRecords(from) {
  const out = [];
  for (const f of frames.slice(from)) {
    if (f.dir !== 'S') continue;
    assert.ok(f.data.endsWith('\x1e'), `a WebSocket message must end at a record boundary (§4.1): ${JSON.stringify(f.data)}`);
    for (const rec of f.data.split('\x1e').slice(0, -1)) out.push(JSON.parse(rec));
  }
  return out;
}

// Pushes are invocations without invocationId (§4.3); with one they would be "client results".
function assertPushesHaveNoInvocationId(from) {
  for (const m of serverRecords(from)) {
    if (m.type === 1) {
      assert.equal(m.invocationId, undefined, `server push with an invocationId (§4.3): ${JSON.stringify(m)}`);
      assert.ok(Array.isArray(m.arguments) && m.arguments.length === 1, `a push carries one argument: ${JSON.stringify(m)}`);
    }
  }
}

// The client's browser code path (§6): not Node, a `window.document`, and a WebSocket
// constructor that, like a browser's, takes a URL and optional protocols and no headers.
class BrowserWebSocket extends WS8 {
  constructor(url, protocols, ...extra) {
    if (extra.length > 0) throw new Error('a browser WebSocket has no options argument (headers cannot be set)');
    super(url, protocols);
  }
}

async function asBrowser(fn) {
  const saved = {
    release: Object.getOwnPropertyDescriptor(process, 'release'),
    window: Object.getOwnPropertyDescriptor(globalThis, 'window'),
    document: Object.getOwnPropertyDescriptor(globalThis, 'document'),
    WebSocket: Object.getOwnPropertyDescriptor(globalThis, 'WebSocket'),
  };
  const document = { addEventListener() {}, removeEventListener() {} };
  Object.defineProperty(process, 'release', {
    ...saved.release,
    value: { ...process.release, name: 'browser-emulation' },
  });
  Object.defineProperty(globalThis, 'window', { value: { document }, configurable: true, writable: true });
  Object.defineProperty(globalThis, 'document', { value: document, configurable: true, writable: true });
  Object.defineProperty(globalThis, 'WebSocket', { value: BrowserWebSocket, configurable: true, writable: true });
  try {
    return await fn();
  } finally {
    Object.defineProperty(process, 'release', saved.release);
    for (const name of ['window', 'document', 'WebSocket']) {
      if (saved[name]) Object.defineProperty(globalThis, name, saved[name]);
      else delete globalThis[name];
    }
  }
}

// ---------------------------------------------------------------------------------------

before(async () => {
  daemon = await startDaemon();
  record(`imrelay demo at ${daemon.url}`);
});

after(async () => {
  await Promise.allSettled([...connections].map(stopConnection));
  if (!daemon) return;
  const { proc, exit } = daemon;
  let result = { code: proc.exitCode, signal: proc.signalCode };
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGINT');
    try {
      result = await withTimeout(exit, STOP_TIMEOUT_MS, 'imrelay demo to exit after SIGINT');
    } catch (err) {
      proc.kill('SIGKILL');
      await exit;
      throw err;
    }
  }
  assert.equal(result.code, 0, `imrelay demo exit after SIGINT: ${JSON.stringify(result)}${diag()}`);
});

/** Posts a fresh DM from -> to and waits for both pushes the recipient's hub gets: the message and the new DM subscription. */
async function postDmAndSeeItPushed(box, from, to) {
  const text = uniqueText(`${from}->${to}`);
  const posted = await postDm(from, to, text);

  const [n] = await box.wait('getRoomMessageNotification', (m) => m && m.msg === text, 'getRoomMessageNotification with our text');
  assert.equal(n.rid, posted.rid);
  assert.equal(n.u.username, from);
  assert.equal(n.msg, text);
  assert.equal(n.t, undefined, 'a normal message has no t');

  const [s] = await box.wait(
    'getRoomSubscriptionChangedNotification',
    (c) => c && c.method === 'insert' && c.msg && c.msg.rid === posted.rid,
    "getRoomSubscriptionChangedNotification method 'insert' for the new DM",
  );
  assert.equal(s.method, 'insert');
  assert.equal(s.msg.rid, posted.rid);
  assert.equal(s.msg.t, 'd', 'a DM subscription');
}

test('Node transport: start, register, DM message and subscription insert arrive', () =>
  withDiag(async () => {
    const token = await login('alice');
    const connection = buildConnection(token);
    try {
      const box = inbox(connection, ['getRoomMessageNotification', 'getRoomSubscriptionChangedNotification']);
      const mark = frames.length;
      const upgradeMark = upgrades.length;
      await withTimeout(connection.start(), WAIT_MS, 'start()');
      assert.equal(connection.state, signalR.HubConnectionState.Connected);
      assert.ok(connection.connectionId, 'negotiate gives a connectionId');

      // The Node path: Authorization header on the upgrade, no access_token in the URL.
      const up = upgrades.slice(upgradeMark).find((u) => u.label === 'node');
      assert.ok(up, 'a WebSocket upgrade from the Node code path');
      assert.match(up.path, /^\/signalr\?id=[^&]+$/, up.path);
      assert.equal(up.headers.authorization, `Bearer ${token}`);

      const registered = await withTimeout(connection.invoke('register'), WAIT_MS, "invoke('register')");
      assert.equal(registered, undefined, 'register is void');

      await postDmAndSeeItPushed(box, 'carol', 'alice');

      assertPushesHaveNoInvocationId(mark);
      // The handshake answer is `{}` (§3) and comes first.
      assert.deepEqual(serverRecords(mark)[0], {}, 'handshake response first');
    } finally {
      await stopConnection(connection);
    }
  }));

test('browser code path (emulated): access_token on the WebSocket URL, same events', () =>
  withDiag(async () => {
    const token = await login('carol');
    await asBrowser(async () => {
      const connection = buildConnection(token);
      try {
        const box = inbox(connection, ['getRoomMessageNotification', 'getRoomSubscriptionChangedNotification']);
        const mark = frames.length;
        const upgradeMark = upgrades.length;
        const negotiateMark = negotiations.length;
        await withTimeout(connection.start(), WAIT_MS, 'start()');
        assert.equal(connection.state, signalR.HubConnectionState.Connected);

        // Browser negotiate: X-SignalR-User-Agent instead of User-Agent, Authorization from the factory.
        const neg = negotiations.slice(negotiateMark)[0];
        assert.ok(neg, 'a negotiate request');
        assert.match(neg.headers['x-signalr-user-agent'] || '', /Browser/, JSON.stringify(neg.headers));
        assert.equal(neg.headers.authorization, `Bearer ${token}`);

        // Browser upgrade: the token only in access_token, no Authorization header.
        const up = upgrades.slice(upgradeMark).find((u) => u.label === 'browser');
        assert.ok(up, 'a WebSocket upgrade from the browser code path');
        assert.equal(up.headers.authorization, undefined, JSON.stringify(up.headers));
        const q = new URL(up.path, daemon.url).searchParams;
        assert.equal(q.get('access_token'), token, up.path);
        assert.ok(q.get('id'), up.path);

        await withTimeout(connection.invoke('register'), WAIT_MS, "invoke('register')");

        await postDmAndSeeItPushed(box, 'bob', 'carol');

        assertPushesHaveNoInvocationId(mark);
      } finally {
        await stopConnection(connection);
      }
    });
  }));

test('operator reconnect: Close with allowReconnect, the client reconnects, the next message arrives', (t) =>
  withDiag(async () => {
    const token = await login('alice');
    const connection = buildConnection(token);
    try {
      const box = inbox(connection, ['getRoomMessageNotification']);
      let reconnectingAt;
      const reconnecting = new Promise((resolve) => {
        connection.onreconnecting((err) => {
          reconnectingAt = Date.now();
          resolve(err);
        });
      });
      const reconnected = new Promise((resolve) => connection.onreconnected(resolve));
      let closedError = null;
      connection.onclose((err) => {
        closedError = err || new Error('closed without error');
      });

      await withTimeout(connection.start(), WAIT_MS, 'start()');
      const firstId = connection.connectionId;
      const mark = frames.length;
      const negotiateMark = negotiations.length;

      const r = await api('POST', '/api/v1/users/alice/reconnect');
      assert.equal(r.status, 204, r.text);

      const err = await withTimeout(reconnecting, WAIT_MS, 'onreconnecting');
      assert.match(String(err && err.message), /Server returned an error on close/, String(err));
      const close = serverRecords(mark).find((m) => m.type === 7);
      assert.ok(close, 'a Close message before the socket closed');
      assert.equal(close.allowReconnect, true, JSON.stringify(close));

      const newId = await withTimeout(reconnected, RECONNECT_WAIT_MS, 'onreconnected');
      t.diagnostic(`reconnected ${Date.now() - reconnectingAt} ms after onreconnecting, ${negotiations.length - negotiateMark} negotiate(s)`);
      assert.equal(closedError, null, `onclose fired: ${closedError}`);
      assert.equal(connection.state, signalR.HubConnectionState.Connected);
      assert.ok(newId, 'onreconnected gets the new connectionId');
      assert.notEqual(newId, firstId, 'a reconnect is a new connection');

      const text = uniqueText('after reconnect');
      const posted = await postDm('carol', 'alice', text);
      const [n] = await box.wait('getRoomMessageNotification', (m) => m && m.msg === text, 'getRoomMessageNotification after the reconnect');
      assert.equal(n.rid, posted.rid);
      assert.equal(n.u.username, 'carol');
    } finally {
      await stopConnection(connection);
    }
  }));

test('a bad token: start() rejects with imrelay\'s error', () =>
  withDiag(async () => {
    const connection = buildConnection('not-a-valid-token');
    const upgradeMark = upgrades.length;
    try {
      await assert.rejects(withTimeout(connection.start(), WAIT_MS, 'start() to settle'), (err) => {
        assert.match(String(err && err.message), /imrelay:/, String(err));
        return true;
      });
      assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
      assert.equal(upgrades.length, upgradeMark, 'no WebSocket after a negotiate error (§1.3)');
    } finally {
      await stopConnection(connection);
    }
  }));

test('an unknown hub method rejects with "Unknown hub method"', () =>
  withDiag(async () => {
    const token = await login('bob');
    const connection = buildConnection(token);
    try {
      await withTimeout(connection.start(), WAIT_MS, 'start()');
      await assert.rejects(withTimeout(connection.invoke('noSuchMethod', 1), WAIT_MS, "invoke('noSuchMethod')"), (err) => {
        assert.match(String(err && err.message), /Unknown hub method 'noSuchMethod'/, String(err));
        return true;
      });
      // The connection survives a failed invocation.
      assert.equal(connection.state, signalR.HubConnectionState.Connected);
      await withTimeout(connection.invoke('register'), WAIT_MS, "invoke('register') after the error");
    } finally {
      await stopConnection(connection);
    }
  }));

// A TCP proxy in front of the daemon, so a test can cut a client's transport mid-stream
// the way a network does (no Close frame), and hold new connections for a while.
async function tcpProxy(target) {
  const { port } = new URL(target);
  const open = new Set();
  let gate = null;
  const server = net.createServer((client) => {
    client.pause();
    const go = () => {
      const upstream = net.connect(Number(port), '127.0.0.1');
      for (const s of [client, upstream]) {
        open.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          open.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    };
    if (gate) gate.then(go);
    else go();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    // Drops every connection through it, as a network does: no close handshake.
    cut() {
      for (const s of open) s.destroy();
    },
    // New connections wait until `until` settles.
    hold(until) {
      gate = until.then(() => {
        gate = null;
      });
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

async function statefulReconnectLosesNothing(t, recipient, from) {
  const proxy = await tcpProxy(daemon.url);
  const token = await login(recipient);
  const connection = buildConnection(token, { baseURL: proxy.url, stateful: true });
  const prefix = uniqueText('stateful');
  const box = inbox(connection, ['getRoomMessageNotification']);
  const ours = () => box.got.filter((e) => e.args[0] && String(e.args[0].msg).startsWith(prefix)).map((e) => e.args[0].msg);
  const waitFor = (text) => box.wait('getRoomMessageNotification', (m) => m && m.msg === text, `the message ${text}`);
  let closed = null;
  connection.onclose((err) => {
    closed = err || new Error('closed');
  });
  try {
    const negotiateMark = negotiations.length;
    await withTimeout(connection.start(), WAIT_MS, 'start()');
    const negotiated = JSON.parse(negotiations[negotiations.length - 1].body);
    assert.equal(negotiated.useStatefulReconnect, true, 'negotiate answers what was asked');
    assert.match(negotiations[negotiations.length - 1].url, /useStatefulReconnect=true/);
    const handshake = frames.find((f) => f.dir === 'C' && f.data.startsWith('{"protocol"') && f.data.includes('"version":2'));
    assert.ok(handshake, 'handshake version 2');
    await withTimeout(connection.invoke('register'), WAIT_MS, "invoke('register')");

    const texts = Array.from({ length: 9 }, (_, i) => `${prefix} #${i}`);
    for (const text of texts.slice(0, 3)) await postDm(from, recipient, text);
    await waitFor(texts[2]);
    const mark = frames.length;

    // Cut mid-stream: the next posts go out while the transport is gone, and the new
    // connection is held until they have.
    let release;
    proxy.hold(new Promise((resolve) => {
      release = resolve;
    }));
    proxy.cut();
    for (const text of texts.slice(3, 6)) await postDm(from, recipient, text);
    release();
    await waitFor(texts[5]);
    for (const text of texts.slice(6)) await postDm(from, recipient, text);
    await waitFor(texts[8]);

    assert.deepEqual(ours(), texts, 'every message once, in order');
    assert.equal(closed, null, `onclose fired: ${closed}`);
    assert.equal(connection.state, signalR.HubConnectionState.Connected);
    assert.equal(negotiations.length, negotiateMark + 1, 'the same connection: no new negotiate');
    const sequence = serverRecords(mark).find((m) => m.type === 9);
    assert.ok(sequence && Number.isInteger(sequence.sequenceId), 'the server says where its sequence resumes');
    // The client acks on a timer of its own (about 1 s): wait for one on the new transport.
    await withTimeout(
      new Promise((resolve) => {
        const look = () => (frames.slice(mark).some((f) => f.dir === 'C' && f.data.includes('"type":8')) ? resolve() : setTimeout(look, 50));
        look();
      }),
      WAIT_MS,
      'an Ack from the client',
    );
    t.diagnostic(`resumed at sequence id ${sequence.sequenceId}`);
  } finally {
    await stopConnection(connection);
    await proxy.close();
  }
}

test('stateful reconnect (Node transport): a transport cut mid-stream loses nothing', (t) =>
  withDiag(() => statefulReconnectLosesNothing(t, 'carol', 'bob')));

test('stateful reconnect (browser code path): a transport cut mid-stream loses nothing', (t) =>
  withDiag(() => asBrowser(() => statefulReconnectLosesNothing(t, 'bob', 'carol'))));
