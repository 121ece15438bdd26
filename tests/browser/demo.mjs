// Drives restream's demo page (GET /demo) in headless Chromium for a Rust integration test.
//
// env: DEMO_URL (required), CHROMIUM (default /usr/bin/chromium), SCREENSHOT (png path),
//      TIMEOUT_MS (per wait, default 20000), HARD_TIMEOUT_MS (whole run, default 300000).
// stdout protocol, one line each:
//   after both panes show a snapshot:  SNAPSHOT {"ws":{"seq":N,"count":N},"sse":{"seq":N,"count":N}}
//   stdin "EXPECT <type> <item-id>"  -> SEEN <type> <id> {"ws_seq":N,"sse_seq":N,"ws_rows":N,"sse_rows":N}
//   stdin "RECONNECTED"              -> RECONNECTED {"ws":N,"sse":N} once both panes show a
//                                       reconnect (N made) and are open again
//   stdin "SCREENSHOT"               -> SHOT <path>
//   stdin "QUIT" or EOF              -> exit 0
//   any error or timeout             -> FAIL <message>, then LOG/DOM lines for debugging, exit 1
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DEMO_URL = process.env.DEMO_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.SCREENSHOT || join(tmpdir(), 'restream-demo.png');
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS) || 20000;
const HARD_TIMEOUT_MS = Number(process.env.HARD_TIMEOUT_MS) || 300000;
const PANES = ['ws', 'sse'];

const logs = []; // console messages, page errors and failed requests, in order
let browser = null;
let page = null;
let finished = false;

const out = (line) => process.stdout.write(line + '\n');
const note = (line) => { logs.push(line); process.stderr.write(line + '\n'); };
const oneLine = (s) => String(s).replace(/\x1b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();

async function withTimeout(promise, ms) {
  let timer;
  const limit = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  try { return await Promise.race([promise, limit]); } finally { clearTimeout(timer); }
}

async function closeBrowser() {
  if (browser) await withTimeout(browser.close().catch(() => {}), 5000);
  browser = null;
}

async function fail(message) {
  if (finished) return;
  finished = true;
  out('FAIL ' + oneLine(message));
  for (const line of logs) out('LOG ' + oneLine(line));
  if (page) {
    const dom = await withTimeout(page.evaluate(domState, PANES).catch((e) => ({ error: e.message })), 3000);
    out('DOM ' + JSON.stringify(dom ?? { error: 'page did not answer' }));
    const shot = await withTimeout(page.screenshot({ path: SCREENSHOT, fullPage: true }).then(() => true, () => false), 5000);
    if (shot) out('SHOT ' + SCREENSHOT);
  }
  await closeBrowser();
  process.exit(1);
}

// Runs in the page: what each pane shows, for failure reports.
function domState(panes) {
  const select = document.querySelector('#channel');
  const result = { url: location.href, channel: select && select.value, info: document.querySelector('#channel-info')?.textContent };
  for (const k of panes) {
    const root = document.querySelector(`#${k}-pane`);
    result[k] = {
      state: document.querySelector(`#${k}-state`)?.textContent,
      health: root?.querySelector('.health')?.textContent,
      items: root ? root.querySelectorAll('table.items tbody tr[data-item-id]').length : null,
      meta: root?.querySelector('.meta')?.textContent,
      log: root ? [...root.querySelectorAll('ol.log li')].slice(0, 15).map((li) => li.textContent) : null,
    };
  }
  return result;
}

// Runs in the page: the newest log entry of `type` (and item id) in each pane, or null.
function newestEvents([panes, type, id]) {
  const found = {};
  for (const k of panes) {
    const li = [...document.querySelectorAll(`#${k}-pane ol.log li.event`)]
      .find((e) => e.dataset.type === type && (id === null || e.dataset.itemId === id));
    if (!li) return null;
    found[k] = { seq: Number(li.dataset.seq), count: li.dataset.count === undefined ? null : Number(li.dataset.count),
      rows: document.querySelectorAll(`#${k}-pane table.items tbody tr[data-item-id]`).length };
  }
  return found;
}

// Runs in the page: each pane's reconnect count once all are open after at least one, or null.
function reconnected(panes) {
  const found = {};
  for (const k of panes) {
    const n = Number(document.querySelector(`#${k}-pane .meta-reconnects`)?.textContent);
    if (!(n >= 1) || document.querySelector(`#${k}-state`)?.textContent !== 'open') return null;
    if (![...document.querySelectorAll(`#${k}-pane ol.log li.event`)].some((li) => li.dataset.type === 'reconnect')) return null;
    found[k] = n;
  }
  return found;
}

async function waitForEvents(type, id) {
  const handle = await page.waitForFunction(newestEvents, [PANES, type, id], { timeout: TIMEOUT_MS, polling: 100 });
  return handle.jsonValue();
}

async function main() {
  if (!DEMO_URL) throw new Error('DEMO_URL is not set');
  const hard = setTimeout(() => fail(`hard timeout of ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: TIMEOUT_MS,
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('console', (m) => note(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => note(`[pageerror] ${e.message}`));
  page.on('requestfailed', (r) => note(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => { if (r.status() >= 400) note(`[http ${r.status()}] ${r.request().method()} ${r.url()}`); });

  const res = await page.goto(DEMO_URL, { waitUntil: 'load', timeout: TIMEOUT_MS });
  if (!res || !res.ok()) throw new Error(`GET ${DEMO_URL} answered ${res ? res.status() : 'nothing'}`);
  await page.waitForFunction(() => {
    const s = document.querySelector('#channel');
    return s && s.options.length > 0 && s.value !== '';
  }, null, { timeout: TIMEOUT_MS, polling: 100 });
  await page.click('#subscribe-both');

  let snap;
  try {
    snap = await waitForEvents('snapshot', null);
  } catch (e) {
    throw new Error(`waiting for a snapshot in both panes: ${e.message}`);
  }
  out('SNAPSHOT ' + JSON.stringify({ ws: snap.ws, sse: snap.sse }));

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const raw of rl) {
    const line = raw.trim();
    if (!line) continue;
    const [cmd, ...rest] = line.split(/\s+/);
    if (cmd === 'QUIT') break;
    if (cmd === 'RECONNECTED') {
      let handle;
      try {
        handle = await page.waitForFunction(reconnected, PANES, { timeout: TIMEOUT_MS, polling: 100 });
      } catch (e) {
        throw new Error(`waiting for both panes to reconnect: ${e.message}`);
      }
      out('RECONNECTED ' + JSON.stringify(await handle.jsonValue()));
    } else if (cmd === 'SCREENSHOT') {
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      out('SHOT ' + SCREENSHOT);
    } else if (cmd === 'EXPECT' && rest.length === 2) {
      const [type, id] = rest;
      let seen;
      try {
        seen = await waitForEvents(type, id);
      } catch (e) {
        throw new Error(`waiting for ${type} ${id} in both panes: ${e.message}`);
      }
      out(`SEEN ${type} ${id} ` + JSON.stringify({ ws_seq: seen.ws.seq, sse_seq: seen.sse.seq, ws_rows: seen.ws.rows, sse_rows: seen.sse.rows }));
    } else {
      throw new Error(`unknown command: ${line}`);
    }
  }
  clearTimeout(hard);
  finished = true;
  await closeBrowser();
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
