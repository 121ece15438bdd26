// Drives the JavaScript client library (clients/js/restream.js, served as /demo/restream.js) in
// headless Chromium for a Rust integration test that restarts the backend and Pushpin under it.
//
// env: PAGE_URL (required: the demo page, for its origin and the library), CHANNEL, PARAMS (JSON),
//      BLOCKED_WS (set: the client's WebSocket URL refuses connections, as if WebSockets were
//      blocked, and the client runs with transport `auto`, so it must fall back to SSE),
//      TOKEN (a JWT the client sends for the whole connection),
//      CHROMIUM (default /usr/bin/chromium), TIMEOUT_MS (per wait, default 30000),
//      HARD_TIMEOUT_MS (whole run, default 300000).
// stdout protocol, one line each:
//   after the first snapshot:             READY {"seq":N,"count":N}
//   stdin "WAIT_ITEM <id>"              -> HAS <id> <state>
//   stdin "WAIT_RECONNECTED <n>"        -> RECONNECTED <state>  (n reconnects made, open again)
//   stdin "WAIT_SEQ <n>"                -> AT <state>  (seq >= n)
//   stdin "STATE"                       -> STATE <state>
//   stdin "QUIT" or EOF                 -> exit 0
//   <state> = {"seq","ids","items","applied","ignored","reconnects","clientState","transport","mismatches","errors"}
//   any error or timeout                -> FAIL <message>, then LOG lines, exit 1
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const PAGE_URL = process.env.PAGE_URL;
const CHANNEL = process.env.CHANNEL || 'usgs-earthquakes';
const PARAMS = JSON.parse(process.env.PARAMS || '{}');
const BLOCKED_WS = Boolean(process.env.BLOCKED_WS);
const TOKEN = process.env.TOKEN || undefined;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS) || 30000;
const HARD_TIMEOUT_MS = Number(process.env.HARD_TIMEOUT_MS) || 300000;

const logs = [];
let browser = null;
let page = null;
let finished = false;
const out = (line) => process.stdout.write(line + '\n');
const note = (line) => { logs.push(line); process.stderr.write(line + '\n'); };
const oneLine = (s) => String(s).replace(/\s+/g, ' ').trim();

async function fail(message) {
  if (finished) return;
  finished = true;
  out('FAIL ' + oneLine(message));
  for (const line of logs.slice(-200)) out('LOG ' + oneLine(line));
  if (page) {
    const state = await Promise.race([page.evaluate(snapshotState).catch((e) => ({ error: e.message })), new Promise((r) => setTimeout(r, 3000))]);
    out('LOG state ' + JSON.stringify(state));
  }
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  process.exit(1);
}

// Runs in the page: what the client holds.
function snapshotState() {
  const t = window.__restreamTest;
  const ch = t.channel;
  return {
    seq: ch.seq,
    ids: ch.items.map((i) => String(i.id)).sort(),
    items: ch.items.slice().sort((a, b) => (String(a.id) < String(b.id) ? -1 : 1)),
    applied: ch.applied,
    ignored: t.ignored,
    reconnects: t.client.reconnects,
    clientState: t.client.state,
    transport: t.client.transport,
    mismatches: t.mismatches,
    errors: t.errors,
  };
}

async function waitFor(fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: TIMEOUT_MS, polling: 100 });
  } catch (e) {
    throw new Error(`waiting for ${what}: ${e.message}`);
  }
  return page.evaluate(snapshotState);
}

async function main() {
  if (!PAGE_URL) throw new Error('PAGE_URL is not set');
  const hard = setTimeout(() => fail(`hard timeout of ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'], timeout: TIMEOUT_MS });
  page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('console', (m) => note(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => note(`[pageerror] ${e.message}`));
  const res = await page.goto(PAGE_URL, { waitUntil: 'load' });
  if (!res || !res.ok()) throw new Error(`GET ${PAGE_URL} answered ${res ? res.status() : 'nothing'}`);

  await page.evaluate(async ([channel, params, blocked, token]) => {
    const { RestreamClient } = await import('/demo/restream.js');
    const client = blocked
      // Port 9 (discard) on loopback: nothing listens, every WebSocket open is refused.
      ? new RestreamClient('ws://127.0.0.1:9/ws', { transport: 'auto', httpUrl: location.origin, backoff: { initialMs: 100, maxMs: 300 } })
      : new RestreamClient(undefined, { transport: 'ws', token, backoff: { initialMs: 200, maxMs: 1000 } });
    const t = { client, ignored: [], mismatches: 0, errors: [] };
    t.channel = client.subscribe(channel, params, { idField: 'id' });
    t.channel.on('ignored', ({ reason, message }) => t.ignored.push([reason, message.type, message.seq]));
    t.channel.on('updated', (c) => { if (c.patchMismatch) t.mismatches += 1; });
    client.on('error', (e) => t.errors.push(e.code));
    client.on('state', (s) => console.log(`client state ${s} (reconnects ${client.reconnects}, seq ${t.channel.seq})`));
    window.__restreamTest = t;
  }, [CHANNEL, PARAMS, BLOCKED_WS, TOKEN]);

  const ready = await waitFor(() => window.__restreamTest.channel.seq !== null, null, 'the first snapshot');
  out('READY ' + JSON.stringify({ seq: ready.seq, count: ready.ids.length }));

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const raw of rl) {
    const [cmd, arg] = raw.trim().split(/\s+/);
    if (!cmd) continue;
    if (cmd === 'QUIT') break;
    if (cmd === 'STATE') out('STATE ' + JSON.stringify(await page.evaluate(snapshotState)));
    else if (cmd === 'WAIT_ITEM') {
      const s = await waitFor((id) => window.__restreamTest.channel.get(id) !== undefined, arg, `item ${arg}`);
      out(`HAS ${arg} ` + JSON.stringify(s));
    } else if (cmd === 'WAIT_SEQ') {
      const s = await waitFor((n) => (window.__restreamTest.channel.seq ?? -1) >= n, Number(arg), `seq ${arg}`);
      out('AT ' + JSON.stringify(s));
    } else if (cmd === 'WAIT_RECONNECTED') {
      const s = await waitFor((n) => { const c = window.__restreamTest.client; return c.reconnects >= n && c.state === 'open'; }, Number(arg), `${arg} reconnects`);
      out('RECONNECTED ' + JSON.stringify(s));
    } else throw new Error(`unknown command: ${raw}`);
  }
  clearTimeout(hard);
  finished = true;
  await browser.close();
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
