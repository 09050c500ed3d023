// End-to-end test of the pages the admin listener serves, in headless
// Chromium: the chat demo (/demo, through web/wsedge.js) in two pages that
// chat with each other, and the status page (/). Run by tests/browser.rs
// against a fresh `wsedge serve`, once with the embedded defaults (the
// demo takes its tokens from POST /api/demo/tokens) and once with a token
// key (POST /api/tokens); see docs/client.md.
//
//   WSEDGE_ADMIN=http://127.0.0.1:9090 WSEDGE_SCREENSHOT_DIR=/tmp node e2e.mjs
//
// WSEDGE_EXPECT_FLOW=demo|tokens makes it check which token flow the
// server offers (GET /api/info) before anything else.
// WSEDGE_EXPECT_COMPRESSION=on|off makes it check that the demo's
// WebSocket negotiated permessage-deflate (Chromium always offers it) or
// did not (`ws.extensions`).
//
// Prints one line per step; exits 1 at the first failing one.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { step } from './step.mjs';

const ADMIN = process.env.WSEDGE_ADMIN;
const SHOTS = process.env.WSEDGE_SCREENSHOT_DIR || '.';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const EXPECT_FLOW = process.env.WSEDGE_EXPECT_FLOW;
const EXPECT_COMPRESSION = process.env.WSEDGE_EXPECT_COMPRESSION;
const TIMEOUT_MS = 15_000; // every wait is bounded by this
const CHANNEL = 'demo:lobby';
const TOKEN_ROUTES = ['/api/tokens', '/api/demo/tokens'];

if (!ADMIN) {
  console.error('set WSEDGE_ADMIN to the admin listener, e.g. http://127.0.0.1:9090');
  process.exit(2);
}

/** Runs one step; prints "ok" or "FAIL" with the reason and rethrows. */
/** A request to the admin API from Node; returns the parsed JSON body. */
async function api(method, path, body) {
  const resp = await fetch(ADMIN + path, {
    method,
    // The admin plane takes bodies only as declared JSON (415 otherwise).
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${path} → HTTP ${resp.status}: ${text}`);
  return JSON.parse(text);
}

/** Waits until `pred(arg)`, evaluated in the page, is true; `what` explains a timeout. */
async function waitFor(page, what, pred, arg) {
  try {
    await page.waitForFunction(pred, arg, { timeout: TIMEOUT_MS, polling: 100 });
  } catch (err) {
    throw new Error(`timed out after ${TIMEOUT_MS} ms waiting for ${what}`);
  }
}

const textOf = (page, sel) => page.locator(sel).textContent({ timeout: TIMEOUT_MS });
const numberOf = async (page, sel) => Number((await textOf(page, sel)).replace(/,/g, ''));

const waitState = (page, state) =>
  waitFor(page, `#state to be "${state}"`, (s) => document.querySelector('#state').textContent === s, state);
const waitLog = (page, text) =>
  waitFor(page, `the chat log to show "${text}"`, (t) => document.querySelector('#log').textContent.includes(t), text);
const waitAbove = (page, sel, n) =>
  waitFor(page, `${sel} to rise above ${n}`,
    ([s, min]) => Number(document.querySelector(s).textContent.replace(/,/g, '')) > min, [sel, n]);

/** Sends a chat line from the demo page and waits for the input to clear (the server's ack). */
async function sendChat(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await waitFor(page, 'the publish to be acknowledged', () => document.querySelector('#text').value === '');
}

/** Collects what must never happen on a page: uncaught errors, CSP violations, tokens in the console. */
function watch(page, problems, tokens) {
  page.on('pageerror', (err) => problems.push(`uncaught error: ${err.message}`));
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy/i.test(text)) problems.push(`CSP violation: ${text}`);
    if (tokens.some((t) => text.includes(t))) problems.push('a token was written to the console');
  });
  page.on('response', async (resp) => {
    if (TOKEN_ROUTES.some((r) => resp.url().endsWith(r)) && resp.ok()) tokens.push((await resp.json()).token);
  });
}

const tag = Math.random().toString(36).slice(2, 8); // makes this run's texts distinctive
const problems = [];
const tokens = [];
let browser;
let demo;
let other;
try {
  mkdirSync(SHOTS, { recursive: true });
  const info = await step('GET /api/info', () => api('GET', '/api/info'));
  const flow = info.tokens ? 'tokens' : info.demo_tokens ? 'demo' : 'none';
  await step(`the server offers the "${flow}" token flow${EXPECT_FLOW ? ` (expected "${EXPECT_FLOW}")` : ''}`, async () => {
    if (EXPECT_FLOW && flow !== EXPECT_FLOW) throw new Error(`/api/info says ${JSON.stringify(info)}`);
    if (flow === 'none') throw new Error('no token flow: the demo could not publish');
  });
  browser = await step('launch chromium', () =>
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: TIMEOUT_MS }));
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  context.setDefaultTimeout(TIMEOUT_MS);
  if (EXPECT_COMPRESSION) {
    // Remember every WebSocket the pages open, to read its `extensions`.
    await context.addInitScript(() => {
      const Native = window.WebSocket;
      window.__wsedgeSockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__wsedgeSockets.push(this);
        }
      };
    });
  }

  demo = await context.newPage();
  watch(demo, problems, tokens);
  await step('open /demo', async () => {
    const resp = await demo.goto(ADMIN + '/demo');
    if (!resp.ok()) throw new Error(`/demo answered HTTP ${resp.status()}`);
  });
  await step('demo connects (state open)', () => waitState(demo, 'open'));
  if (EXPECT_COMPRESSION) {
    await step(`permessage-deflate negotiated: ${EXPECT_COMPRESSION}`, async () => {
      const exts = await demo.evaluate(() =>
        window.__wsedgeSockets.filter((s) => s.readyState === 1).map((s) => s.extensions));
      if (exts.length === 0) throw new Error('no open WebSocket in the demo page');
      const want = EXPECT_COMPRESSION === 'on';
      for (const e of exts) {
        if (e.startsWith('permessage-deflate') !== want) {
          throw new Error(`ws.extensions is ${JSON.stringify(e)}`);
        }
      }
      console.log(`      extensions: ${JSON.stringify(exts)}`);
    });
  }
  const user = await textOf(demo, '#user');
  const fetches0 = await numberOf(demo, '#token-fetches');
  await step(`demo user ${user} connected with a token`, async () => {
    if (fetches0 < 1) throw new Error(`#token-fetches is ${fetches0}, expected at least 1`);
  });

  await step('a chat message comes back through the channel', async () => {
    const text = `hello from the browser ${tag}`;
    await sendChat(demo, text);
    await waitLog(demo, text);
  });

  // The newcomer's check: a second tab, a line typed and Enter pressed in one, shown in the other.
  other = await context.newPage();
  watch(other, problems, tokens);
  const otherName = `tab2-${tag}`;
  await step(`open a second /demo as ${otherName}`, async () => {
    const resp = await other.goto(ADMIN + '/demo?name=' + otherName);
    if (!resp.ok()) throw new Error(`/demo answered HTTP ${resp.status()}`);
    await waitState(other, 'open');
    if ((await textOf(other, '#user')) !== otherName) throw new Error('?name= was not taken');
  });

  await step('a line typed in the first tab (Enter) appears in the second', async () => {
    const text = `typed in tab one ${tag}`;
    await demo.fill('#text', text);
    await demo.press('#text', 'Enter');
    await waitLog(other, text);
    await waitLog(demo, text);
    const seen = await other.locator('#log').innerText({ timeout: TIMEOUT_MS });
    if (!seen.includes(`${user} ${text}`)) throw new Error(`the second tab shows ${JSON.stringify(seen)}`);
  });

  await step('a line typed in the second tab (Enter) appears in the first', async () => {
    const text = `typed in tab two ${tag}`;
    await other.fill('#text', text);
    await other.press('#text', 'Enter');
    await waitLog(demo, text);
  });

  await step('neither tab was refused anything', async () => {
    for (const page of [demo, other]) {
      const log = await page.locator('#log').innerText({ timeout: TIMEOUT_MS });
      if (/not sent|error:/.test(log)) throw new Error(`a tab's log says: ${log}`);
    }
  });

  await step('a message published through the admin API arrives', async () => {
    const text = `from the api ${tag}`;
    await api('POST', `/api/channels/${encodeURIComponent(CHANNEL)}/publish`, { text });
    await waitLog(demo, text);
  });

  const reconnects0 = await numberOf(demo, '#reconnects');
  let kicked;
  await step('the admin API disconnects the demo with code 4000', async () => {
    const { connections } = await api('GET', `/api/users/${encodeURIComponent(user)}`);
    if (connections.length !== 1) throw new Error(`user ${user} has connections ${JSON.stringify(connections)}, expected one`);
    kicked = connections[0];
    await api('DELETE', `/api/connections/${kicked}?code=4000`);
    await waitLog(demo, 'disconnected (code 4000)');
  });

  await step('the demo reconnects with a fresh token', async () => {
    await waitAbove(demo, '#reconnects', reconnects0);
    await waitState(demo, 'open');
    const fetches = await numberOf(demo, '#token-fetches');
    if (fetches <= fetches0) throw new Error(`#token-fetches stayed at ${fetches}: no fresh token for the reconnect`);
    const { connections } = await api('GET', `/api/users/${encodeURIComponent(user)}`);
    if (connections.length !== 1 || connections[0] === kicked) {
      throw new Error(`expected one new connection for ${user}, got ${JSON.stringify(connections)}`);
    }
  });

  await step('after the reconnect the channel is subscribed again', async () => {
    const text = `after the reconnect ${tag}`;
    await api('POST', `/api/channels/${encodeURIComponent(CHANNEL)}/publish`, { text });
    await waitLog(demo, text);
  });

  const status = await context.newPage();
  watch(status, problems, tokens);
  await step('open / (status page) and receive the live stream', async () => {
    const resp = await status.goto(ADMIN + '/');
    if (!resp.ok()) throw new Error(`/ answered HTTP ${resp.status()}`);
    await waitFor(status, '#feed to say "live" (Server-Sent Events)', () => document.querySelector('#feed').textContent === 'live');
  });

  await step('the status page shows the open connection and the channel', async () => {
    await waitAbove(status, '#open-total', 0);
    await waitFor(status, `#top-channels to list ${CHANNEL}`,
      (c) => document.querySelector('#top-channels').textContent.includes(c), CHANNEL);
    await waitFor(status, 'a row per core in #cores', () => document.querySelectorAll('#cores tbody tr td.n').length > 0);
  });

  await step('a chat message raises #messages-in-total', async () => {
    const before = await numberOf(status, '#messages-in-total');
    await sendChat(demo, `counted ${tag}`);
    await waitAbove(status, '#messages-in-total', before);
  });

  await step('no uncaught errors, CSP violations or tokens in the console', async () => {
    if (problems.length) throw new Error(problems.join('; '));
  });

  await step(`screenshots in ${SHOTS}`, async () => {
    await status.screenshot({ path: join(SHOTS, 'status.png'), fullPage: true });
    await demo.screenshot({ path: join(SHOTS, 'demo.png'), fullPage: true });
    await other.screenshot({ path: join(SHOTS, 'demo-2.png'), fullPage: true });
  });
  console.log('browser e2e: all steps passed');
} catch (err) {
  process.exitCode = 1;
  for (const [name, page] of [['demo', demo], ['demo-2', other]]) {
    if (!page) continue;
    // What the user would have seen: the log usually tells why.
    const log = await page.locator('#log').innerText({ timeout: 2000 }).catch(() => '(unavailable)');
    console.log(`${name} log at failure:\n${log}`);
    await page.screenshot({ path: join(SHOTS, `${name}-failure.png`) }).catch(() => {});
  }
  if (!String(err.message).startsWith('timed out')) console.log(err.stack);
} finally {
  await browser?.close();
}
