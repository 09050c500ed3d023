// A web page from another origin tries to drive the admin plane, in
// headless Chromium. Run by tests/browser.rs against a fresh `wsedge serve`
// (token key set, no admin key: the loopback default) whose admin listener
// is WSEDGE_ADMIN. The attacker's page is served by this script from
// another loopback port; it tries what a malicious site could:
//
//  1. a "simple" cross-origin POST (text/plain, no preflight) to mint a
//     token and to publish;
//  2. a cross-origin POST with Content-Type: application/json (the
//     browser asks first with a preflight; the server must not allow it);
//  3. an HTML form posted to the publish route;
//  4. DNS rebinding: the attacker's host name resolves to 127.0.0.1
//     (Chromium's --host-resolver-rules), so the page is same-origin with
//     the admin listener as far as the browser knows and could read every
//     answer; only the server's Host check stands in the way.
//
// Every request that reaches the server must be refused (403 or 415),
// and none may succeed. The Rust side checks that nothing was published.
//
//   WSEDGE_ADMIN=http://127.0.0.1:9090 node cross_origin.mjs
//
// Prints one line per step; exits 1 at the first failing one.

import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { step } from './step.mjs';

const ADMIN = process.env.WSEDGE_ADMIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHANNEL = process.env.WSEDGE_CHANNEL || 'victim';
const TIMEOUT_MS = 15_000;
const REBIND_HOST = 'rebind.attacker.test';

if (!ADMIN) {
  console.error('set WSEDGE_ADMIN to the admin listener, e.g. http://127.0.0.1:9090');
  process.exit(2);
}
const adminPort = new URL(ADMIN).port;

// The attacker's site: one page with a form aimed at the admin plane.
const attackerPage = `<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain"
      action="${ADMIN}/api/channels/${CHANNEL}/publish">
  <input name='{"text":"from a form","x":"' value='"}'>
</form></body></html>`;
const site = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(attackerPage);
});
await new Promise((ok) => site.listen(0, '127.0.0.1', ok));
const SITE = `http://127.0.0.1:${site.address().port}`;

/** Every answer the admin listener gave to this page, as "METHOD path → status". */
function recordAdminAnswers(page, answers) {
  page.on('response', (resp) => {
    const url = new URL(resp.url());
    if (url.port === adminPort) {
      answers.push({ method: resp.request().method(), path: url.pathname, status: resp.status() });
    }
  });
}

/** No answer of the admin listener was a success. */
function noneSucceeded(answers, what) {
  const ok = answers.filter((a) => a.status >= 200 && a.status < 300);
  if (ok.length) throw new Error(`${what}: ${JSON.stringify(ok)} succeeded`);
}

let browser;
try {
  browser = await step('launch chromium', () =>
    chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', `--host-resolver-rules=MAP ${REBIND_HOST} 127.0.0.1`],
      timeout: TIMEOUT_MS,
    }));
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = await context.newPage();
  const answers = [];
  recordAdminAnswers(page, answers);
  await step(`open the attacker's page at ${SITE}`, async () => {
    const resp = await page.goto(SITE + '/');
    if (!resp.ok()) throw new Error(`HTTP ${resp.status()}`);
  });

  await step('a simple cross-origin POST (text/plain) can neither mint a token nor publish', async () => {
    const before = answers.length;
    await page.evaluate(async ([admin, channel]) => {
      const tries = [
        ['/api/tokens', { user: 'mallory', subscribe: ['*'], publish: ['*'] }],
        [`/api/channels/${channel}/publish`, { text: 'pwned' }],
      ];
      for (const [path, body] of tries) {
        await fetch(admin + path, { method: 'POST', mode: 'no-cors', body: JSON.stringify(body) }).catch(() => {});
      }
    }, [ADMIN, CHANNEL]);
    const mine = answers.slice(before);
    if (mine.length !== 2) throw new Error(`expected 2 answers from the admin listener, saw ${JSON.stringify(mine)}`);
    for (const a of mine) {
      if (a.status !== 403) throw new Error(`${a.method} ${a.path} answered ${a.status}, expected 403`);
    }
  });

  await step('a cross-origin JSON POST is stopped at its preflight', async () => {
    const before = answers.length;
    const outcome = await page.evaluate(async ([admin, channel]) => {
      const results = [];
      const tries = [
        ['/api/tokens', { user: 'mallory', subscribe: ['*'] }],
        [`/api/channels/${channel}/publish`, { text: 'pwned' }],
      ];
      for (const [path, body] of tries) {
        try {
          const r = await fetch(admin + path, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(body),
          });
          results.push(`read ${r.status}: ${await r.text()}`);
        } catch (e) {
          results.push(`blocked: ${e.name}`);
        }
      }
      return results;
    }, [ADMIN, CHANNEL]);
    for (const o of outcome) {
      if (!o.startsWith('blocked')) throw new Error(`the page read an answer: ${o}`);
    }
    const posts = answers.slice(before).filter((a) => a.method === 'POST');
    if (posts.length) throw new Error(`a POST went through after the preflight: ${JSON.stringify(posts)}`);
  });

  await step('an HTML form posted to the publish route is refused', async () => {
    const before = answers.length;
    const [resp] = await Promise.all([
      page.waitForNavigation({ timeout: TIMEOUT_MS }),
      page.evaluate(() => document.getElementById('f').submit()),
    ]);
    if (!resp) throw new Error('no navigation');
    if (resp.status() !== 403) throw new Error(`the form answered ${resp.status()}, expected 403`);
    noneSucceeded(answers.slice(before), 'the form');
  });

  await step('DNS rebinding: the admin plane refuses a foreign Host, even for the status page', async () => {
    const rebound = await context.newPage();
    const seen = [];
    recordAdminAnswers(rebound, seen);
    const origin = `http://${REBIND_HOST}:${adminPort}`;
    const resp = await rebound.goto(origin + '/');
    if (resp.status() !== 403) throw new Error(`GET / under ${REBIND_HOST} answered ${resp.status()}, expected 403`);
    // Same-origin as far as the browser knows: it would let the page read these.
    const read = await rebound.evaluate(async ([channel]) => {
      const out = {};
      const tries = [
        ['GET', '/api/stats'],
        ['GET', '/metrics'],
        ['POST', '/api/tokens'],
        ['POST', `/api/channels/${channel}/publish`],
      ];
      for (const [method, path] of tries) {
        const body = path === '/api/tokens' ? { user: 'mallory', subscribe: ['*'] } : { text: 'pwned' };
        const r = await fetch(path, {
          method,
          headers: method === 'POST' ? { 'Content-Type': 'application/json' } : {},
          body: method === 'POST' ? JSON.stringify(body) : undefined,
        });
        out[`${method} ${path}`] = r.status;
      }
      return out;
    }, [CHANNEL]);
    for (const [what, status] of Object.entries(read)) {
      if (status !== 403) throw new Error(`${what} under ${REBIND_HOST} answered ${status}, expected 403`);
    }
    noneSucceeded(seen, 'under the rebound host');
  });

  await step('nothing the attacker sent succeeded', async () => noneSucceeded(answers, 'the attacker'));
  console.log('cross-origin: all steps passed');
} catch (err) {
  process.exitCode = 1;
  console.log(err.stack);
} finally {
  await browser?.close();
  site.close();
}
