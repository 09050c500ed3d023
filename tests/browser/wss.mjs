// wss:// in headless Chromium. Run by tests/browser.rs against a fresh
// `wsedge serve` with a test certificate on both listeners (admin.tls
// reusing [tls]). Chromium trusts that certificate only through
// --ignore-certificate-errors-spki-list (its SPKI's SHA-256, base64), a
// flag this test alone uses. The page is the admin plane's status page,
// loaded over https; from it the script opens wss://…/echo, sends a text
// and a binary message and expects both back, then closes with 1000.
// With WSEDGE_EXPECT_COMPRESSION=on it also checks that Chromium's
// permessage-deflate offer was agreed to (`ws.extensions`) over TLS.
//
//   WSEDGE_ADMIN=https://127.0.0.1:9090 WSEDGE_WS=wss://127.0.0.1:8080 \
//   WSEDGE_SPKI=<base64> node wss.mjs
//
// Prints one line per step; exits 1 at the first failing one.

import { chromium } from 'playwright-core';
import { step } from './step.mjs';

const ADMIN = process.env.WSEDGE_ADMIN;
const WS = process.env.WSEDGE_WS;
const SPKI = process.env.WSEDGE_SPKI;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = 15_000;
const EXPECT_COMPRESSION = process.env.WSEDGE_EXPECT_COMPRESSION === 'on';

if (!ADMIN || !WS || !SPKI) {
  console.error('set WSEDGE_ADMIN, WSEDGE_WS and WSEDGE_SPKI');
  process.exit(2);
}

let browser;
let failed = false;
try {
  browser = await step('launch chromium', () =>
    chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', `--ignore-certificate-errors-spki-list=${SPKI}`],
      timeout: TIMEOUT_MS,
    }));
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = await context.newPage();
  await step('open the status page over https', async () => {
    const resp = await page.goto(`${ADMIN}/`);
    if (!resp || resp.status() !== 200) throw new Error(`status ${resp && resp.status()}`);
    if (!page.url().startsWith('https://')) throw new Error(`not https: ${page.url()}`);
  });
  const got = await step('echo over wss://', () =>
    page.evaluate(async ({ url, timeoutMs }) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const replies = [];
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out')), timeoutMs);
        ws.onerror = () => reject(new Error('websocket error'));
        ws.onopen = () => {
          ws.send('hello over wss ✓');
          ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
        };
        ws.onmessage = (ev) => {
          replies.push(typeof ev.data === 'string' ? ev.data : Array.from(new Uint8Array(ev.data)));
          if (replies.length === 2) ws.close(1000, 'done');
        };
        ws.onclose = (ev) => {
          clearTimeout(timer);
          resolve({ replies, code: ev.code, clean: ev.wasClean, extensions: ws.extensions });
        };
      });
      return done;
    }, { url: `${WS}/echo`, timeoutMs: TIMEOUT_MS }));
  await step('replies and close are right', async () => {
    const { extensions, ...rest } = got;
    const want = JSON.stringify({ replies: ['hello over wss ✓', [1, 2, 3, 250]], code: 1000, clean: true });
    if (JSON.stringify(rest) !== want) throw new Error(`got ${JSON.stringify(got)}`);
    const agreed = extensions.startsWith('permessage-deflate');
    if (agreed !== EXPECT_COMPRESSION) {
      throw new Error(`extensions ${JSON.stringify(extensions)}, compression expected ${EXPECT_COMPRESSION}`);
    }
  });
} catch {
  failed = true;
} finally {
  if (browser) await browser.close();
}
process.exit(failed ? 1 : 0);
