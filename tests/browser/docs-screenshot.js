'use strict';
// Makes docs/demo.png for the README: alice's window mid-conversation with bob, carol and
// #general. Not a test (node --test does not pick it up); run it by hand after changing the
// page: `node docs-screenshot.js [out.png]` in tests/browser. Same daemon and browser as
// the test (helper.js): `imrelay demo --quiet`, Debian's /usr/bin/chromium.

const fs = require('node:fs');
const path = require('node:path');
const { REPO_ROOT, withTimeout, startDemo, launchBrowser, demoLogin, demoRc } = require('./helper');

const OUT = path.resolve(process.argv[2] || path.join(REPO_ROOT, 'docs', 'demo.png'));
const WAIT_MS = 10000;

async function main() {
  const demo = await startDemo({ quiet: true });
  let browser;
  try {
    browser = await launchBrowser();
    const token = {};
    for (const u of ['alice', 'bob', 'carol']) token[u] = await demoLogin(demo, u);
    const post = (from, roomId, text) => demoRc(demo, token[from], 'POST', 'chat.postMessage', { roomId, text });
    const dm = async (from, to) => (await demoRc(demo, token[from], 'POST', 'im.create', { username: to })).room._id;

    // Rocket.Chat's default REST rate limit (10 calls a minute per route and client IP, and
    // every call here reaches it from imrelay's one address) allows 10 chat.postMessage in
    // all: this script posts 9.
    // Earlier: a little #general and a DM with bob, all read by alice.
    await post('carol', 'GENERAL', 'Morning all! The 4.2 release notes are up on the wiki.');
    const bobDm = await dm('bob', 'alice');
    await post('bob', bobDm, 'Hey Alice, got a minute to look at the relay config?');
    await post('bob', bobDm, 'The reconnect backoff feels too aggressive on flaky Wi-Fi.');
    await demoRc(demo, token.alice, 'POST', 'subscriptions.read', { rid: 'GENERAL' });

    const context = await browser.newContext({ viewport: { width: 1200, height: 720 }, deviceScaleFactor: 2 });
    context.setDefaultTimeout(WAIT_MS);
    const page = await context.newPage();
    await page.goto(`${demo.url}/`);
    await page.locator('[data-testid="login-alice"]').click();
    await page.locator('#status[data-state="live"]').waitFor();
    await page.locator('#messages[data-room-id="GENERAL"][data-state="ready"]').waitFor();
    await page.locator(`li[data-room-id="${bobDm}"] button`).click();
    await page.locator(`#messages[data-room-id="${bobDm}"][data-state="ready"]`).waitFor();

    // Live, while alice looks at the DM with bob.
    const input = page.locator('#composer-input');
    const say = async (text) => {
      await input.fill(text);
      await input.press('Enter');
      await page.locator('#messages [data-testid="message"]', { hasText: text }).waitFor();
    };
    await say('Sure! Is it the 0 / 2 / 10 s schedule?');
    await post('bob', bobDm, 'Yes. I pushed a draft that adds jitter and caps it at 30 s.');
    await page.locator('#messages [data-testid="message"]', { hasText: 'adds jitter' }).waitFor();
    await say('Looks good to me. The badges update instantly here, by the way.');
    await post('bob', bobDm, 'That is the SignalR relay at work. Merging after lunch.');
    await page.locator('#messages [data-testid="message"]', { hasText: 'Merging after lunch' }).waitFor();

    const carolDm = await dm('carol', 'alice');
    await post('carol', carolDm, 'Lunch at 12:30? The usual place.');
    await page.locator(`[data-testid="room-badge"][data-room-id="${carolDm}"][data-count="1"]`).waitFor();
    await post('carol', 'GENERAL', '@alice could you review the deploy checklist before Friday?');
    await page.locator('[data-testid="room-badge"][data-room-id="GENERAL"][data-count="1"]').waitFor();

    await input.fill('Perfect, ping me once it is merged.');
    await page.mouse.move(0, 0);
    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    await page.screenshot({ path: OUT, timeout: WAIT_MS });
    console.log(`wrote ${OUT}`);
  } finally {
    if (browser) await withTimeout(browser.close(), WAIT_MS, 'the browser to close');
    const r = await demo.stop();
    if (r.code !== 0) console.error(`imrelay demo exited ${JSON.stringify(r)}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
