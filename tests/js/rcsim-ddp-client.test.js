'use strict';
// rcsim against npm `@rocket.chat/ddp-client` 1.1.2 (protocol doc 6.1, 2, 3).
//
// What the library needs:
// - `connected` after its `connect` frame (createAndConnect resolves on it);
// - `login` `result` with `{id, token, tokenExpires: {$date}}` (loginWithToken /
//   loginWithPassword destructure `tokenExpires.$date` and throw without it);
// - `ready` for its `sub` (subscription.ready() resolves), `nosub` for `unsub`;
// - stream events as `changed` with `collection == "stream-<name>"` and
//   `fields.eventName == key`; the callback gets `...fields.args`.
//
// Run: `node --test` in tests/js (RCSIM_TRACE=1 prints every DDP frame). rcsim binary: $RCSIM_BIN, default <repo>/target/debug/rcsim.
// REST logins here (rate limiter: 10/min per route per IP): alice, bob = 2.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const WS = require('ws');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const RCSIM_BIN = process.env.RCSIM_BIN
  ? path.resolve(REPO_ROOT, process.env.RCSIM_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'rcsim');
const STARTUP_TIMEOUT_MS = 20000;
const WAIT_MS = 10000;

// Every frame on every ddp-client socket, for failure messages and for tests that wait
// for a particular frame (`tap` emits 'frame' with 'S: ...' / 'C: ...').
const frames = [];
const tap = new EventEmitter();
function record(line) {
  frames.push(line);
  tap.emit('frame', line);
}
class TapWebSocket extends WS {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (e) => record(`S: ${String(e.data)}`));
  }

  send(data, ...rest) {
    record(`C: ${data}`);
    return super.send(data, ...rest);
  }
}
// Node 20 has no global WebSocket (doc 6.1); DDPSDK.create uses the global.
globalThis.WebSocket = TapWebSocket;

const { DDPSDK } = require('@rocket.chat/ddp-client');

let sim; // the shared instance: { proc, baseUrl, port, stderr: string[] }

const { withTimeout } = require('../jslib/wait.js');

const running = new Set(); // every rcsim started by this file

function diag() {
  const tail = [...running].map((s) => s.stderr.join('').slice(-4000)).join('\n--- next rcsim ---\n');
  return `\n--- ddp frames ---\n${frames.slice(-60).join('\n')}\n--- rcsim stderr tail ---\n${tail}`;
}

// Wrap an async check so a failure carries the frame log and rcsim's stderr.
async function withDiag(fn) {
  try {
    await fn();
  } catch (err) {
    err.message += diag();
    throw err;
  }
}

function startRcsim(extraArgs = []) {
  if (!fs.existsSync(RCSIM_BIN)) {
    throw new Error(`rcsim binary not found at ${RCSIM_BIN} (build it with \`cargo build -p rcsim\` or set RCSIM_BIN)`);
  }
  const proc = spawn(RCSIM_BIN, ['--listen', '127.0.0.1:0', '--admin', 'super:123qwe', '--seed', 'demo', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderr.push(chunk);
    if (stderr.length > 2000) stderr.splice(0, 1000);
  });
  const lines = readline.createInterface({ input: proc.stdout });
  const listening = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const m = /^rcsim listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/.exec(line);
      if (m) resolve({ baseUrl: m[1], port: Number(m[2]) });
    });
    proc.on('exit', (code, signal) => reject(new Error(`rcsim exited (${code ?? signal}) before listening`)));
    proc.on('error', reject);
  });
  return withTimeout(listening, STARTUP_TIMEOUT_MS, "the 'rcsim listening on' line")
    .then((addr) => {
      const handle = { proc, stderr, ...addr };
      running.add(handle);
      return handle;
    })
    .catch((err) => {
      proc.kill('SIGKILL');
      err.message += `\nrcsim stderr:\n${stderr.join('').slice(-4000)}`;
      throw err;
    });
}

async function stopRcsim(handle) {
  if (!handle) return;
  running.delete(handle);
  const { proc } = handle;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  try {
    await withTimeout(exited, 5000, 'rcsim to exit');
  } catch {
    proc.kill('SIGKILL');
    await exited;
  }
}

async function rest(method, route, { body, creds } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (creds) {
    headers['X-User-Id'] = creds.userId;
    headers['X-Auth-Token'] = creds.authToken;
  }
  const res = await withTimeout(
    fetch(`${sim.baseUrl}/api/v1/${route}`, { method, headers, body: body && JSON.stringify(body) }),
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
  return { status: res.status, json, text };
}

async function restLogin(user, password) {
  const r = await rest('POST', 'login', { body: { user, password } });
  assert.equal(r.status, 200, `login ${user}: ${r.text}`);
  assert.equal(r.json.status, 'success', r.text);
  return r.json.data; // { userId, authToken, me }
}

async function postMessage(creds, text) {
  const r = await rest('POST', 'chat.postMessage', { body: { roomId: 'GENERAL', text }, creds });
  assert.equal(r.status, 200, `chat.postMessage: ${r.text}`);
  assert.equal(r.json.success, true, r.text);
  return r.json.message;
}

async function connectSdk(target = sim) {
  // The SDK strips the scheme and connects to ws://host:port/websocket (doc 6.1).
  // retryCount 0: a dropped socket must fail the test, not be papered over by a reconnect.
  return withTimeout(
    DDPSDK.createAndConnect(`ws://127.0.0.1:${target.port}`, { retryCount: 0, retryTime: 100 }),
    WAIT_MS,
    'DDP connected',
  );
}

function closeSdk(sdk) {
  if (!sdk) return;
  sdk.connection.close();
  // connection.close() marks the status 'closed', so no 'disconnected' event stops the
  // heartbeat/timeout timers; stop them so node can exit.
  sdk.timeoutControl.stop();
}

function assertEjsonDate(value, what) {
  assert.ok(value && typeof value === 'object', `${what} must be {$date: n}, got ${JSON.stringify(value)}`);
  assert.deepEqual(Object.keys(value), ['$date'], `${what}: ${JSON.stringify(value)}`);
  assert.ok(Number.isInteger(value.$date) && value.$date > 1e12, `${what}: ${JSON.stringify(value)}`);
}

before(async () => {
  sim = await startRcsim();
});

after(async () => {
  await Promise.all([...running].map(stopRcsim));
  if (process.env.RCSIM_TRACE) console.log(frames.join('\n')); // RCSIM_TRACE=1 node --test
});

test('resume login, stream-room-messages GENERAL, message posted by bob over REST arrives', () =>
  withDiag(async () => {
    const alice = await restLogin('alice', 'alice-pw');
    const bob = await restLogin('bob', 'bob-pw');
    const sdk = await connectSdk();
    try {
      const result = await withTimeout(sdk.account.loginWithToken(alice.authToken), WAIT_MS, 'login result');
      assert.equal(result.id, alice.userId);
      assert.equal(result.token, alice.authToken, 'a resume login returns the same token (doc 3.1)');
      assert.equal(result.type, 'resume');
      assertEjsonDate(result.tokenExpires, 'result.tokenExpires');
      assert.equal(sdk.account.uid, alice.userId);
      // The server publishes the user's own document (`added` users) on login (doc 3.1),
      // which is where the SDK learns the username.
      assert.equal(sdk.account.user && sdk.account.user.username, 'alice', 'no `added users` frame with fields.username before the login result');

      const events = [];
      let notify;
      const first = new Promise((resolve) => {
        notify = resolve;
      });
      const sub = sdk.stream('room-messages', 'GENERAL', (...args) => {
        events.push(args);
        notify(args);
      });
      await withTimeout(sub.ready(), WAIT_MS, 'ready for stream-room-messages GENERAL');

      // The user's own notify-user events (doc 3.4): a message by someone else updates
      // alice's subscription and the room.
      const waitFor = (key) => {
        let stream;
        const got = new Promise((resolve) => {
          stream = sdk.stream('notify-user', `${alice.userId}/${key}`, (...a) => resolve(a));
        });
        return { stream, got };
      };
      const subChanged = waitFor('subscriptions-changed');
      const roomChanged = waitFor('rooms-changed');
      await withTimeout(subChanged.stream.ready(), WAIT_MS, 'ready for notify-user subscriptions-changed');
      await withTimeout(roomChanged.stream.ready(), WAIT_MS, 'ready for notify-user rooms-changed');

      const text = `hello from bob ${crypto.randomUUID().slice(0, 8)}`;
      const posted = await postMessage(bob, text);

      const args = await withTimeout(first, WAIT_MS, 'stream-room-messages event');
      assert.equal(args.length, 1, `stream-room-messages args must be [IMessage] (doc 3.4): ${JSON.stringify(args)}`);
      const [msg] = args;
      assert.equal(msg._id, posted._id);
      assert.equal(msg.rid, 'GENERAL');
      assert.equal(msg.msg, text);
      assert.equal(msg.u._id, bob.userId);
      assert.equal(msg.u.username, 'bob');
      assertEjsonDate(msg.ts, 'message.ts');
      assertEjsonDate(msg._updatedAt, 'message._updatedAt');
      assert.equal(msg.ts.$date, Date.parse(posted.ts), 'DDP ts and REST ts are the same instant');

      const [subAction, subscription] = await withTimeout(subChanged.got, WAIT_MS, 'subscriptions-changed event');
      assert.equal(subAction, 'updated', 'change words are inserted/updated/removed (doc 3.5)');
      assert.equal(subscription.rid, 'GENERAL');
      assert.equal(subscription.u._id, alice.userId);
      assert.equal(subscription.t, 'c');
      assertEjsonDate(subscription._updatedAt, 'subscription._updatedAt');

      const [roomAction, room] = await withTimeout(roomChanged.got, WAIT_MS, 'rooms-changed event');
      assert.equal(roomAction, 'updated');
      assert.equal(room._id, 'GENERAL');
      assert.equal(room.t, 'c');
      assert.equal(room.lastMessage && room.lastMessage._id, posted._id, 'rooms-changed carries lastMessage (doc 5.3)');
      assertEjsonDate(room.lm, 'room.lm');
      assertEjsonDate(room._updatedAt, 'room._updatedAt');

      // unsub is always answered with nosub without error (doc 3.3).
      await withTimeout(sdk.client.unsubscribe(sub.id), WAIT_MS, 'nosub after unsub');
    } finally {
      closeSdk(sdk);
    }
  }));

test('password login with a sha-256 digest (carol)', () =>
  withDiag(async () => {
    const sdk = await connectSdk();
    try {
      const digest = crypto.createHash('sha256').update('carol-pw').digest('hex');
      await withTimeout(sdk.account.loginWithPassword('carol', digest), WAIT_MS, 'login result');
      assert.match(sdk.account.uid, /^[23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}$/);
      assert.match(sdk.account.user.token, /^[A-Za-z0-9_-]{43}$/, 'login tokens are Random.secret() (doc intro)');
      assert.ok(sdk.account.user.tokenExpires instanceof Date && sdk.account.user.tokenExpires > new Date());
      assert.equal(sdk.account.user.username, 'carol');

      // A wrong password is a method error (403 "Incorrect password", doc 3.1).
      const bad = await connectSdk();
      try {
        await assert.rejects(
          withTimeout(bad.account.loginWithPassword('carol', 'f'.repeat(64)), WAIT_MS, 'login error'),
          (err) => {
            assert.equal(err.error, 403, JSON.stringify(err));
            assert.equal(err.reason, 'Incorrect password', JSON.stringify(err));
            return true;
          },
        );
      } finally {
        closeSdk(bad);
      }
    } finally {
      closeSdk(sdk);
    }
  }));

test('server heartbeat ping is answered by the library and the connection stays up', () =>
  withDiag(async () => {
    // Server pings an idle connection with {"msg":"ping"} (no id, doc 2.2); the client
    // answers {"msg":"pong"} (doc 6.1). A short heartbeat makes this quick.
    const hb = await startRcsim(['--heartbeat-ms', '300']);
    let sdk;
    let onFrame;
    try {
      sdk = await connectSdk(hb);
      const digest = crypto.createHash('sha256').update('carol-pw').digest('hex');
      await withTimeout(sdk.account.loginWithPassword('carol', digest), WAIT_MS, 'login result');

      const seen = { ping: 0, pong: 0 };
      const twoPongs = new Promise((resolve) => {
        onFrame = (line) => {
          if (line === 'S: {"msg":"ping"}') seen.ping += 1;
          if (line === 'C: {"msg":"pong"}') seen.pong += 1;
          if (seen.pong >= 2) resolve();
        };
        tap.on('frame', onFrame);
      });
      // Idle until the server has pinged twice and the library answered both; the
      // second ping means the first pong kept the connection open.
      await withTimeout(twoPongs, WAIT_MS, 'two server pings answered with pongs');
      assert.ok(seen.ping >= 2, JSON.stringify(seen));

      const rooms = await withTimeout(sdk.call('rooms/get'), WAIT_MS, 'rooms/get result');
      assert.ok(Array.isArray(rooms) && rooms.some((r) => r._id === 'GENERAL' && r.t === 'c'), JSON.stringify(rooms));
    } finally {
      if (onFrame) tap.off('frame', onFrame);
      closeSdk(sdk);
      await stopRcsim(hb);
    }
  }));
