// A page on a second loopback origin using restream's API across origins, in headless Chromium,
// for backend/tests/e2e/browser.rs: EventSource (SSE), fetch (HTTP API) and WebSocket.
//
// env: API_URL (Pushpin's public http://host:port, required), PAGE_PORT (required: the page is
//      served on http://127.0.0.1:PAGE_PORT), FEED (the usgs feed the EventSource reads),
//      CHROMIUM (default /usr/bin/chromium), TIMEOUT_MS (default 20000).
// stdout: RESULT {"sse": seq | "error", "fetch": n channels | "error", "ws": "ready" | "error"}
//         or FAIL <message>; exits 0 after RESULT.
import { chromium } from 'playwright-core';
import http from 'node:http';

const API_URL = process.env.API_URL;
const PAGE_PORT = Number(process.env.PAGE_PORT);
const FEED = process.env.FEED || '1.0_day';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS) || 20000;

const out = (line) => process.stdout.write(line + '\n');

// The page: each transport settles to a value or "error"; `window.__result` once all have.
const page = (api, feed) => `<!doctype html><meta charset="utf-8"><title>cross-origin</title>
<script>
const api = ${JSON.stringify(api)};
const result = {};
const settle = (k, v) => { if (!(k in result)) { result[k] = v; } if (Object.keys(result).length === 3) window.__result = result; };
const es = new EventSource(api + '/channels/usgs-earthquakes/events?feed=' + ${JSON.stringify(feed)});
es.addEventListener('snapshot', (e) => { settle('sse', JSON.parse(e.data).seq); es.close(); });
es.onerror = () => { settle('sse', 'error'); es.close(); };
fetch(api + '/channels').then((r) => r.json()).then((j) => settle('fetch', j.channels.length), () => settle('fetch', 'error'));
const ws = new WebSocket(api.replace(/^http/, 'ws') + '/ws');
ws.onmessage = (m) => { settle('ws', JSON.parse(m.data).type); ws.close(); };
ws.onerror = () => settle('ws', 'error');
</script>`;

async function main() {
  if (!API_URL || !PAGE_PORT) throw new Error('API_URL and PAGE_PORT are required');
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(API_URL, FEED));
  });
  await new Promise((resolve, reject) => server.listen(PAGE_PORT, '127.0.0.1', resolve).on('error', reject));
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'], timeout: TIMEOUT_MS,
  });
  try {
    const tab = await browser.newPage();
    tab.on('console', (m) => process.stderr.write(`[console.${m.type()}] ${m.text()}\n`));
    await tab.goto(`http://127.0.0.1:${PAGE_PORT}/`, { waitUntil: 'load', timeout: TIMEOUT_MS });
    const handle = await tab.waitForFunction(() => window.__result, null, { timeout: TIMEOUT_MS, polling: 100 });
    out('RESULT ' + JSON.stringify(await handle.jsonValue()));
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
}

main().then(() => process.exit(0), (e) => { out('FAIL ' + String(e && e.message || e).replace(/\s+/g, ' ')); process.exit(1); });
