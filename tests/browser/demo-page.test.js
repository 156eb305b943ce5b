'use strict';
// The demo chat page (web/) in a real headless browser: Debian's /usr/bin/chromium driven by
// playwright-core (no browser download). One `imrelay demo --quiet` for the file (bot off, so
// every message here is the test's own), two browser contexts as alice and bob.
//
// The page comes from the binary as built (files embedded at build time) unless
// IMRELAY_WEB_DIR is set in the environment, which the daemon then serves from disk.
//
// Run: `npm ci && npm test` in tests/browser (needs target/debug/imrelay, or IMRELAY_BIN).
// Writes target/demo-screenshot.png (alice's window at the end of the chat), and on a
// failure target/demo-failure-<user>.png for each open page.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { REPO_ROOT, withTimeout, startDemo, launchBrowser, httpJson, demoLogin, demoRc } = require('./helper');

const WAIT_MS = 10000; // any single UI wait
const TEST_MS = 120000; // a whole test
const VIEWPORT = { width: 1280, height: 800 };
const SCREENSHOT = path.join(REPO_ROOT, 'target', 'demo-screenshot.png');

let demo;
let browser;
const pages = new Map(); // user -> { page, context, console: string[], errors: string[] }

function diag() {
  const parts = [];
  for (const [user, p] of pages) {
    parts.push(`--- ${user}: page errors ---\n${p.errors.join('\n') || '(none)'}`);
    parts.push(`--- ${user}: console (last 40) ---\n${p.console.slice(-40).join('\n') || '(none)'}`);
  }
  if (demo) parts.push(`--- imrelay stderr tail ---\n${demo.stderr.join('').slice(-4000)}`);
  if (process.env.IMRELAY_WEB_DIR) parts.push(`(page served from IMRELAY_WEB_DIR=${process.env.IMRELAY_WEB_DIR})`);
  return `\n${parts.join('\n')}`;
}

async function withDiag(fn) {
  try {
    await fn();
  } catch (err) {
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    for (const [user, p] of pages) {
      await p.page
        .screenshot({ path: path.join(REPO_ROOT, 'target', `demo-failure-${user}.png`), timeout: WAIT_MS })
        .catch(() => {});
    }
    err.message += diag();
    throw err;
  }
}

// A fresh browser context (own storage, so a separate "window") signed in as `user`, with
// #general open and the SignalR connection live.
async function signIn(user) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const page = await context.newPage();
  const entry = { page, context, console: [], errors: [] };
  pages.set(user, entry);
  page.on('console', (m) => entry.console.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => entry.errors.push(String(e && e.stack ? e.stack : e)));
  page.on('requestfailed', (r) => entry.console.push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));

  await page.goto(`${demo.url}/`);
  await page.locator('[data-testid="login"]').waitFor({ state: 'visible' });
  await page.locator(`[data-testid="login-${user}"]`).click();
  await page.locator('#status[data-state="live"]').waitFor();
  await page.locator('#messages[data-room-id="GENERAL"][data-state="ready"]').waitFor();
  return page;
}

function roomItem(page, rid) {
  return page.locator(`#app li[data-testid="room"][data-room-id="${rid}"]`);
}

function badge(page, rid) {
  return page.locator(`[data-testid="room-badge"][data-room-id="${rid}"]`);
}

function message(page, text) {
  return page.locator('#messages [data-testid="message"]', { hasText: text });
}

async function send(page, text) {
  const input = page.locator('#composer-input');
  await input.fill(text);
  await input.press('Enter');
  // The sender's own copy: from chat.postMessage's answer or the live event, whichever is first.
  await message(page, text).waitFor();
  assert.equal(await input.inputValue(), '', 'the composer is cleared after sending');
}

let serial = 0;
function uniqueText(label) {
  serial += 1;
  return `${label} #${serial} ${Math.random().toString(36).slice(2, 8)}`;
}

// Waits until Rocket.Chat itself (its latest subscription event, as the page keeps it on the
// room item) reports `rid` read for the user, no earlier than `sinceMs` (epoch ms): unread 0,
// no alert, and last seen at or after `sinceMs`. The page shows 0 for its open room whatever
// the server says; this checks that its subscriptions.read really went through.
async function waitForServerRead(page, rid, sinceMs, what) {
  try {
    await page.waitForFunction(
      ([id, since]) => {
        const li = document.querySelector(`#app li[data-testid="room"][data-room-id="${id}"]`);
        return !!li && li.dataset.serverUnread === '0' && li.dataset.serverAlert === 'false' && Number(li.dataset.lastSeen) >= since;
      },
      [rid, sinceMs],
      { timeout: WAIT_MS },
    );
  } catch (err) {
    const attrs = await roomItem(page, rid).evaluate((li) => ({ ...li.dataset })).catch(() => null);
    err.message = `${what}: ${err.message}; room item: ${JSON.stringify(attrs)}`;
    throw err;
  }
}

async function messageTime(page, text) {
  const iso = await message(page, text).locator('time').getAttribute('datetime');
  const ms = Date.parse(iso);
  assert.ok(ms > 0, `message time of "${text}": ${iso}`);
  return ms;
}

before(
  async () => {
    demo = await startDemo({ quiet: true });
    browser = await launchBrowser();
  },
  { timeout: 90000 },
);

after(
  async () => {
    const problems = [];
    if (browser) {
      await withTimeout(browser.close(), WAIT_MS, 'the browser to close').catch((e) => problems.push(`closing the browser: ${e.message}`));
    }
    if (demo) {
      const r = await demo.stop().catch((e) => ({ error: e.message }));
      if (r.code !== 0) problems.push(`imrelay demo after SIGINT: ${JSON.stringify(r)}\n${demo.stderr.join('').slice(-3000)}`);
    }
    assert.deepEqual(problems, []);
  },
  { timeout: 60000 },
);

test('alice and bob chat live in two windows; badges follow Rocket.Chat unread rules', { timeout: TEST_MS }, () =>
  withDiag(async () => {
    const alice = await signIn('alice');
    const bob = await signIn('bob');

    // The page is the demo's own, the bundle is the vendored one, and both are connected.
    for (const page of [alice, bob]) {
      assert.match(await page.locator('#status').textContent(), /live/i);
      assert.equal(await page.evaluate(() => typeof window.signalR), 'object', 'signalR global from /static/signalr.min.js');
      assert.equal(await roomItem(page, 'GENERAL').getAttribute('data-room-type'), 'c');
      assert.match(await page.locator('[data-testid="room-title"]').textContent(), /general/);
    }
    assert.match(await alice.locator('#me').textContent(), /Alice/);
    assert.match(await bob.locator('#me').textContent(), /Bob/);
    // No DM between them yet (a fresh, quiet demo).
    assert.equal(await alice.locator('#dm-list li[data-testid="room"]').count(), 0);

    // Bob opens a DM with alice (im.create) ...
    await bob.locator('[data-testid="dm-alice"]').click();
    await bob.locator('#messages[data-state="ready"]:not([data-room-id="GENERAL"])').waitFor();
    const rid = await bob.locator('#messages').getAttribute('data-room-id');
    assert.ok(rid && rid !== 'GENERAL', `bob's open room is the DM: ${rid}`);
    assert.equal(await roomItem(bob, rid).getAttribute('data-room-type'), 'd');
    assert.match(await bob.locator('[data-testid="room-title"]').textContent(), /Alice/);

    // ... and writes. Alice, with #general open, sees the DM appear live with a badge of 1
    // and the message as its preview, without her open room changing.
    const first = uniqueText('Hi Alice, bob here');
    await send(bob, first);
    await roomItem(alice, rid).waitFor();
    await badge(alice, rid).and(alice.locator('[data-count="1"]')).waitFor();
    assert.equal((await badge(alice, rid).textContent()).trim(), '1');
    await roomItem(alice, rid).locator('.room-preview', { hasText: first }).waitFor();
    assert.equal(await alice.locator('#messages').getAttribute('data-room-id'), 'GENERAL');
    assert.equal(await message(alice, first).count(), 0, "the DM's message is not in alice's #general");

    // A second message: the badge goes up.
    const second = uniqueText('Are you there?');
    await send(bob, second);
    await badge(alice, rid).and(alice.locator('[data-count="2"]')).waitFor();
    assert.equal((await badge(alice, rid).textContent()).trim(), '2');

    // Alice opens the DM: the history holds both, the badge is gone, Rocket.Chat agrees.
    await roomItem(alice, rid).locator('button').click();
    await alice.locator(`#messages[data-room-id="${rid}"][data-state="ready"]`).waitFor();
    await message(alice, first).waitFor();
    await message(alice, second).waitFor();
    await badge(alice, rid).waitFor({ state: 'detached' });
    await waitForServerRead(alice, rid, await messageTime(alice, second), "alice's DM read on opening it");

    // With the DM open, bob's next message shows up live in alice's pane and is marked read
    // at once: her badge stays 0.
    const third = uniqueText('Great, the relay is live');
    await send(bob, third);
    await message(alice, third).waitFor();
    await waitForServerRead(alice, rid, await messageTime(alice, third), 'the live message read at once');
    assert.equal(await badge(alice, rid).count(), 0, "no badge on alice's open room");
    assert.equal(await roomItem(alice, rid).getAttribute('data-unread'), '0');

    // Alice answers: live in bob's open DM.
    const reply = uniqueText('Hey Bob! Yes, messages arrive instantly');
    await send(alice, reply);
    await message(bob, reply).waitFor();
    assert.equal(await message(bob, reply).getAttribute('data-username'), 'alice');

    // A plain #general message (no mention) only flags the room for alice (Rocket.Chat's
    // default: alert without an unread count, shown as a dot).
    await roomItem(bob, 'GENERAL').locator('button').click();
    await bob.locator('#messages[data-room-id="GENERAL"][data-state="ready"]').waitFor();
    const announcement = uniqueText('Standup in 5 minutes');
    await send(bob, announcement);
    await roomItem(alice, 'GENERAL').and(alice.locator('[data-alert="true"]')).waitFor();
    await badge(alice, 'GENERAL').and(alice.locator('[data-count="0"]')).waitFor();
    await roomItem(alice, 'GENERAL').locator('.room-preview', { hasText: announcement }).waitFor();

    // A mention of alice in #general counts as unread.
    const mention = uniqueText('@alice can you review the deploy checklist?');
    await send(bob, mention);
    await badge(alice, 'GENERAL').and(alice.locator('[data-count="1"]')).waitFor();

    // Both still live; nothing threw in either page.
    for (const page of [alice, bob]) {
      assert.equal(await page.locator('#status').getAttribute('data-state'), 'live');
      assert.match(await page.locator('#status').textContent(), /live/i);
    }
    for (const [user, p] of pages) assert.deepEqual(p.errors, [], `uncaught errors in ${user}'s page`);

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await alice.screenshot({ path: SCREENSHOT, timeout: WAIT_MS });
    assert.ok(fs.statSync(SCREENSHOT).size > 10000, `${SCREENSHOT} written`);
  }),
);

test('simulate switch, server-asked reconnect, and a clear message when the session ends', { timeout: TEST_MS }, () =>
  withDiag(async () => {
    const carol = await signIn('carol');

    // The switch drives GET|POST /demo/simulate (the demo started --quiet: off).
    const sw = carol.locator('#simulate');
    await carol.locator('#simulate:not(:checked):not(:disabled)').waitFor({ state: 'attached' });
    await carol.locator('.switch').click();
    await carol.locator('#simulate:checked:not(:disabled)').waitFor({ state: 'attached' });
    assert.deepEqual((await httpJson('GET', `${demo.url}/demo/simulate`)).json, { on: true });
    await carol.locator('.switch').click();
    await carol.locator('#simulate:not(:checked):not(:disabled)').waitFor({ state: 'attached' });
    assert.deepEqual((await httpJson('GET', `${demo.url}/demo/simulate`)).json, { on: false });
    assert.equal(await sw.isChecked(), false);

    // imrelay asks carol's clients to reconnect: the pill goes reconnecting, then live, and
    // live events still arrive.
    await carol.evaluate(() => {
      window.__statusSeen = [];
      const status = document.getElementById('status');
      new MutationObserver(() => window.__statusSeen.push(status.dataset.state)).observe(status, { attributes: true, attributeFilter: ['data-state'] });
    });
    const rr = await httpJson('POST', `${demo.url}/api/v1/users/carol/reconnect`, { token: demo.key });
    assert.equal(rr.status, 204, `reconnect carol: ${rr.status} ${rr.text}`);
    await carol.waitForFunction(() => window.__statusSeen.includes('reconnecting') && document.getElementById('status').dataset.state === 'live', null, { timeout: WAIT_MS });
    const seen = await carol.evaluate(() => window.__statusSeen);
    assert.ok(!seen.includes('ended') && !seen.includes('offline'), `status went: ${seen.join(' -> ')}`);
    const after = uniqueText('Back after the reconnect');
    const bobToken = await demoLogin(demo, 'bob');
    await demoRc(demo, bobToken, 'POST', 'chat.postMessage', { roomId: 'GENERAL', text: after });
    await message(carol, after).waitFor();

    // The session ends for good (logout): a clear message, no composing, a way back in.
    const r = await httpJson('POST', `${demo.url}/api/v1/users/carol/logout`, { token: demo.key });
    assert.ok(r.status >= 200 && r.status < 300, `logout carol: ${r.status} ${r.text}`);
    await carol.locator('#session-ended').waitFor({ state: 'visible' });
    await carol.locator('#status[data-state="ended"]').waitFor();
    assert.match(await carol.locator('#status').textContent(), /session ended/i);
    assert.match(await carol.locator('#session-ended').textContent(), /session ended/i);
    assert.match(await carol.locator('#session-ended').textContent(), /logged_out/);
    assert.ok(await carol.locator('#composer-input').isDisabled(), 'no composing after the session ended');
    assert.deepEqual(pages.get('carol').errors, []);

    // "Sign in again" gets a new session and goes live again.
    await carol.locator('[data-testid="session-ended-action"]').click();
    await carol.locator('#status[data-state="live"]').waitFor();
    await carol.locator('#session-ended').waitFor({ state: 'hidden' });
    await carol.locator('#messages[data-room-id="GENERAL"][data-state="ready"]').waitFor();
    await message(carol, after).waitFor();
    assert.ok(await carol.locator('#composer-input').isEnabled());
  }),
);
