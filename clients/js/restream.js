// restream client: subscribe to channels over WebSocket (or Server-Sent Events when WebSockets
// are blocked), keep each channel's items by the protocol's seq rule, reconnect with jittered
// backoff and resume with `since`. No dependencies; runs in browsers and in Node (pass a
// WebSocket implementation). Protocol: docs/protocol.md, schemas/protocol/.

// ---- RFC 6902 JSON Patch and JSON equality (to check `updated` events) ----

/** A deep copy of a JSON value. */
export function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** JSON equality: objects compare by keys (in any order), arrays by position. */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

/** The reference tokens of an RFC 6901 JSON Pointer. */
export function parsePointer(pointer) {
  if (pointer === '') return [];
  if (typeof pointer !== 'string' || pointer[0] !== '/') throw new PatchError(`bad JSON pointer ${JSON.stringify(pointer)}`);
  return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export class PatchError extends Error {
  constructor(message) { super(message); this.name = 'PatchError'; }
}

function arrayIndex(arr, token, forAdd) {
  if (forAdd && token === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`bad array index ${JSON.stringify(token)}`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new PatchError(`array index ${i} out of range`);
  return i;
}

// The container holding the pointer's last token, and that token.
function locate(doc, tokens) {
  let node = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[arrayIndex(node, t, false)];
    else if (node !== null && typeof node === 'object' && Object.prototype.hasOwnProperty.call(node, t)) node = node[t];
    else throw new PatchError(`path not found at ${JSON.stringify(t)}`);
  }
  if (node === null || typeof node !== 'object') throw new PatchError('path does not lead to an object or array');
  return [node, tokens[tokens.length - 1]];
}

function get(doc, tokens) {
  if (!tokens.length) return doc;
  const [parent, last] = locate(doc, tokens);
  if (Array.isArray(parent)) return parent[arrayIndex(parent, last, false)];
  if (!Object.prototype.hasOwnProperty.call(parent, last)) throw new PatchError(`no member ${JSON.stringify(last)}`);
  return parent[last];
}

function remove(doc, tokens) {
  if (!tokens.length) throw new PatchError('cannot remove the whole document');
  const [parent, last] = locate(doc, tokens);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false), 1)[0];
  if (!Object.prototype.hasOwnProperty.call(parent, last)) throw new PatchError(`no member ${JSON.stringify(last)}`);
  const old = parent[last];
  delete parent[last];
  return old;
}

// Returns the new document (a replaced root is a new value).
function add(doc, tokens, value) {
  if (!tokens.length) return value;
  const [parent, last] = locate(doc, tokens);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else parent[last] = value;
  return doc;
}

/**
 * Applies an RFC 6902 patch to a copy of `doc` and returns the result; throws PatchError when
 * an operation cannot apply (a `test` that fails included). `doc` is never modified.
 */
export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError('a patch is an array of operations');
  let out = clone(doc);
  for (const op of patch) {
    if (!op || typeof op !== 'object') throw new PatchError('an operation is an object');
    const path = parsePointer(op.path);
    switch (op.op) {
      case 'add': out = add(out, path, clone(op.value)); break;
      case 'remove': remove(out, path); break;
      case 'replace':
        if (path.length) remove(out, path);
        out = add(out, path, clone(op.value));
        break;
      case 'move': {
        const from = parsePointer(op.from);
        if (op.path.startsWith(op.from + '/')) throw new PatchError('cannot move a value into itself');
        const value = remove(out, from);
        out = add(out, path, value);
        break;
      }
      case 'copy': out = add(out, path, clone(get(out, parsePointer(op.from)))); break;
      case 'test':
        if (!deepEqual(get(out, path), op.value)) throw new PatchError(`test failed at ${op.path}`);
        break;
      default: throw new PatchError(`unknown op ${JSON.stringify(op.op)}`);
    }
  }
  return out;
}

// ---- One channel's item set, kept by the seq rule: pure, no I/O ----

/** The key of an item id: ids may be strings or numbers, compared as text. */
export const idKey = (id) => (id === undefined || id === null ? null : String(id));

/**
 * A channel's items and last applied seq. `apply(message)` follows the client rule:
 * - a `snapshot` whose seq is higher than what is held (or any with `reset: true`) replaces
 *   the items;
 * - `new` / `updated` / `removed` before a snapshot, or not above the last seq, are dropped
 *   (duplicates after a resume);
 * - an event more than one above the last seq is a gap: not applied, the caller resyncs;
 * - `updated` is applied by its patch and checked against the item it carries; on a mismatch
 *   the carried item wins and the result says so.
 */
export class ChannelState {
  constructor(idField = 'id') {
    this.idField = idField;
    /** Last applied seq; null before the first snapshot. */
    this.seq = null;
    /** id key → item, in snapshot order then arrival order. */
    this.items = new Map();
  }

  idOf(item) {
    return item && typeof item === 'object' ? idKey(item[this.idField]) : null;
  }

  /**
   * Applies one server message. Returns `{ applied, reason?, change? }`; `reason` is one of
   * `no_snapshot`, `duplicate`, `gap`, `not_an_event`; `change` is
   * `{ type, id, item, previous, seq, patchMismatch }`.
   */
  apply(m) {
    switch (m && m.type) {
      case 'snapshot': return this.applySnapshot(m);
      case 'new': case 'updated': case 'removed': return this.applyEvent(m);
      default: return { applied: false, reason: 'not_an_event' };
    }
  }

  applySnapshot(m) {
    if (this.seq !== null && m.seq <= this.seq && m.reset !== true) return { applied: false, reason: 'duplicate' };
    const previous = this.items;
    this.items = new Map();
    for (const item of m.items || []) {
      const id = this.idOf(item);
      if (id !== null) this.items.set(id, item);
    }
    this.seq = m.seq;
    return { applied: true, change: { type: 'snapshot', seq: m.seq, reset: m.reset === true, items: [...this.items.values()], previous } };
  }

  applyEvent(m) {
    if (this.seq === null) return { applied: false, reason: 'no_snapshot' };
    if (m.seq <= this.seq) return { applied: false, reason: 'duplicate' };
    if (m.seq > this.seq + 1) return { applied: false, reason: 'gap', expected: this.seq + 1 };
    const id = this.idOf(m.item);
    const previous = id === null ? undefined : this.items.get(id);
    let patchMismatch = false;
    if (m.type === 'removed') {
      if (id !== null) this.items.delete(id);
    } else if (m.type === 'updated') {
      patchMismatch = true;
      if (previous !== undefined) {
        try { patchMismatch = !deepEqual(applyPatch(previous, m.patch), m.item); } catch { patchMismatch = true; }
      }
      if (id !== null) this.items.set(id, m.item);
    } else if (id !== null) {
      this.items.set(id, m.item);
    }
    this.seq = m.seq;
    return { applied: true, change: { type: m.type, seq: m.seq, id, item: m.item, previous, patchMismatch } };
  }
}

// ---- The client ----

export const PROTOCOL_VERSION = 1;
const CHANNEL_EVENTS = ['snapshot', 'new', 'updated', 'removed', 'status'];
/** Refusals a retry cannot fix: the channel ends in state `failed`. */
const FINAL_ERRORS = new Set(['unknown_channel', 'invalid_params', 'unauthorized', 'bad_message', 'unknown_action',
  'too_many_params', 'param_too_long', 'url_not_allowed']);

/** A small event emitter: `on(type, fn)` returns a function that removes the listener. */
class Emitter {
  constructor() { this.listeners = new Map(); }
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) { this.listeners.get(type)?.delete(fn); }
  emit(type, value) {
    for (const fn of [...(this.listeners.get(type) || [])]) {
      try { fn(value); } catch (e) { if (type !== 'listener_error') this.emit('listener_error', e); }
    }
  }
}

/** Params as the server compares them: values as text. */
function textParams(params) {
  const out = {};
  for (const [k, v] of Object.entries(params || {})) out[k] = String(v);
  return out;
}

/** The delay before reconnect attempt `n` (1-based): exponential, capped, with full jitter in [0.5, 1]. */
export function backoffDelay(n, { initialMs = 500, maxMs = 15000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, n - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/**
 * One subscription: its items (`items`, `seq`), upstream health and events. Events: `snapshot`,
 * `new`, `updated`, `removed` (each with the change), `change` (every applied change), `status`,
 * `error`, `state`, `subscribed`, `unsubscribed`, `ignored` (a duplicate or early event dropped).
 */
export class Channel extends Emitter {
  constructor(client, name, params, options = {}) {
    super();
    this.client = client;
    this.name = name;
    /** The params as given; `serverParams` holds the full set (defaults) once known. */
    this.params = { ...(params || {}) };
    this.serverParams = null;
    this.token = options.token;
    this.state = new ChannelState(options.idField || 'id');
    if (Number.isInteger(options.since)) this.resumeFrom = options.since;
    /** `pending` | `subscribed` | `failed` | `closed`. */
    this.status = 'pending';
    /** Upstream health: `unknown` | `ok` | `degraded`; `lastStatus` is the whole message. */
    this.health = 'unknown';
    this.lastStatus = null;
    this.lastError = null;
    /** Seqs of the events applied, in order (bounded): a duplicate would show here. */
    this.applied = [];
    this.ref = null;
    this.sse = null;
  }

  /** The current items, as an array. */
  get items() { return [...this.state.items.values()]; }
  /** The item with this id, if held. */
  get(id) { return this.state.items.get(idKey(id)); }
  /** Last applied seq (null before the first snapshot). */
  get seq() { return this.state.seq; }

  /** Whether a server message names this subscription. */
  matches(m) {
    if (m.channel !== this.name) return false;
    const server = textParams(m.params);
    if (this.serverParams) return Object.keys(server).length === Object.keys(this.serverParams).length
      && Object.entries(server).every(([k, v]) => this.serverParams[k] === v);
    return Object.entries(textParams(this.params)).every(([k, v]) => server[k] === v);
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit('state', status);
  }

  /** The subscribe request, resuming from the last applied seq. */
  subscribeMessage(ref) {
    const m = { action: 'subscribe', channel: this.name, ref };
    if (Object.keys(this.params).length) m.params = this.params;
    const since = this.state.seq !== null ? this.state.seq : this.resumeFrom;
    if (since !== undefined && since !== null) m.since = since;
    if (this.token) m.token = this.token;
    return m;
  }

  /** Handles one channel message (snapshot, new, updated, removed, status). */
  handle(m) {
    if (!this.serverParams && m.params) this.serverParams = textParams(m.params);
    if (m.type === 'status') {
      this.health = m.status;
      this.lastStatus = m;
      this.emit('status', m);
      return;
    }
    const result = this.state.apply(m);
    if (!result.applied) {
      this.emit('ignored', { reason: result.reason, message: m });
      if (result.reason === 'gap') this.client.resync(this);
      return;
    }
    if (m.type !== 'snapshot') {
      this.applied.push(m.seq);
      if (this.applied.length > 10000) this.applied.splice(0, this.applied.length - 10000);
    }
    const change = { ...result.change, message: m };
    this.emit(m.type, change);
    this.emit('change', change);
  }

  /** Ends this subscription. */
  unsubscribe() { this.client.unsubscribe(this); }
}

/**
 * A connection to restream. `url` is the WebSocket URL (`ws://host:7999/ws`; in a browser it
 * defaults to this page's host). Options:
 * - `token`: a JWT for the connection (`?token=` on the URL; `Authorization` is not possible
 *   from a browser);
 * - `transport`: `auto` (WebSocket, falling back to SSE after `wsAttemptsBeforeSse` failed
 *   opens when `EventSource` exists and no WebSocket has opened yet), `ws` or `sse`;
 * - `httpUrl`: the HTTP base for SSE (derived from `url`);
 * - `backoff`: `{ initialMs, maxMs }`; `WebSocket`, `EventSource`: implementations to use.
 * Events: `state` (`connecting` | `open` | `reconnecting` | `closed`), `transport`, `error`
 * (with `code`), `message` (every server message), `ready`.
 */
export class RestreamClient extends Emitter {
  constructor(url, options = {}) {
    super();
    const loc = typeof location !== 'undefined' ? location : null;
    this.url = url || (loc ? `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws` : null);
    if (!this.url) throw new Error('a WebSocket URL is required outside a browser');
    this.httpUrl = (options.httpUrl || this.url.replace(/^ws/, 'http').replace(/\/(ws|channels)\/?(\?.*)?$/, '')).replace(/\/$/, '');
    this.options = options;
    this.token = options.token;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.EventSource = options.EventSource || globalThis.EventSource;
    this.backoff = { initialMs: 500, maxMs: 15000, ...(options.backoff || {}) };
    this.wsAttemptsBeforeSse = options.wsAttemptsBeforeSse || 3;
    this.transport = options.transport === 'sse' ? 'sse' : 'ws';
    this.fallback = (options.transport || 'auto') === 'auto';
    this.channels = new Set();
    this.state = 'closed';
    this.ws = null;
    this.ready = false;
    this.attempt = 0;
    this.wsFailures = 0;
    this.everReady = false;
    this.nextRef = 1;
    this.timer = null;
    this.stopped = false;
    this.reconnects = 0;
    if (this.transport === 'ws' && !this.WebSocket) {
      if (this.fallback && this.EventSource) this.transport = 'sse';
      else throw new Error('no WebSocket implementation: pass options.WebSocket');
    }
    this.emit('transport', this.transport);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** Subscribes to `name` with `params`; options: `idField`, `token`, `since`. */
  subscribe(name, params = {}, options = {}) {
    this.stopped = false;
    const channel = new Channel(this, name, params, options);
    this.channels.add(channel);
    if (this.transport === 'sse') this.openSse(channel);
    else if (this.ws && this.ready) this.sendSubscribe(channel);
    else this.connect();
    return channel;
  }

  unsubscribe(channel) {
    if (!this.channels.delete(channel)) return;
    channel.setStatus('closed');
    if (channel.sse) { channel.sse.close(); channel.sse = null; }
    if (this.ws && this.ready && this.transport === 'ws') {
      const m = { action: 'unsubscribe', channel: channel.name };
      if (Object.keys(channel.params).length) m.params = channel.params;
      this.send(m);
    }
  }

  /** Closes everything; no reconnect. */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const c of this.channels) { if (c.sse) { c.sse.close(); c.sse = null; } }
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.ready = false;
    this.setState('closed');
  }

  // ---- WebSocket ----
  connect() {
    if (this.ws || this.stopped || this.transport !== 'ws') return;
    clearTimeout(this.timer);
    this.timer = null;
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    let url = this.url;
    if (this.token) url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this.token);
    let ws;
    try { ws = new this.WebSocket(url); } catch (e) { this.emit('error', { code: 'connect_failed', message: String(e && e.message || e) }); this.scheduleReconnect(); return; }
    this.ws = ws;
    this.ready = false;
    ws.onmessage = (e) => { if (this.ws === ws) this.onWsMessage(e.data); };
    ws.onclose = () => { if (this.ws === ws) this.onWsClose(); };
    ws.onerror = () => { /* onclose follows */ };
  }

  onWsMessage(data) {
    let m;
    try { m = JSON.parse(typeof data === 'string' ? data : String(data)); } catch {
      this.emit('error', { code: 'bad_server_message', message: 'a message that is not JSON' });
      return;
    }
    this.emit('message', m);
    if (m.type === 'ready') {
      this.ready = true;
      this.everReady = true;
      this.attempt = 0;
      this.wsFailures = 0;
      this.setState('open');
      this.emit('ready', m);
      // A refused channel (unknown, bad params, no token) is not asked for again.
      for (const c of this.channels) if (c.status !== 'failed') this.sendSubscribe(c);
      return;
    }
    this.route(m);
  }

  onWsClose() {
    const wasReady = this.ready;
    this.ws = null;
    this.ready = false;
    if (this.stopped) { this.setState('closed'); return; }
    if (!wasReady) this.wsFailures += 1;
    // Only a WebSocket that never opened is taken as blocked: once one worked, a failure is an
    // outage (a restart), and WebSocket is retried.
    if (this.fallback && !this.everReady && this.wsFailures >= this.wsAttemptsBeforeSse && this.EventSource) {
      this.transport = 'sse';
      this.emit('transport', 'sse');
      this.setState('open');
      for (const c of this.channels) this.openSse(c);
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped || this.timer) return;
    this.attempt += 1;
    this.reconnects += 1;
    this.setState('reconnecting');
    const delay = backoffDelay(this.attempt, this.backoff);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
  }

  send(m) {
    if (this.ws && this.ready) this.ws.send(JSON.stringify(m));
  }

  sendSubscribe(channel) {
    channel.ref = `r${this.nextRef++}`;
    this.send(channel.subscribeMessage(channel.ref));
  }

  /** Subscribes again from the last applied seq (after a gap). */
  resync(channel) {
    if (this.transport === 'sse') { this.openSse(channel); return; }
    if (channel.resyncing) return;
    channel.resyncing = true;
    setTimeout(() => { channel.resyncing = false; if (this.channels.has(channel)) this.sendSubscribe(channel); }, 0);
  }

  route(m) {
    const byRef = m.ref !== undefined ? [...this.channels].find((c) => c.ref === m.ref) : undefined;
    switch (m.type) {
      case 'subscribed': {
        const c = byRef || [...this.channels].find((x) => x.matches(m));
        if (!c) return;
        c.serverParams = textParams(m.params);
        c.setStatus('subscribed');
        c.emit('subscribed', m);
        return;
      }
      case 'unsubscribed': {
        const c = byRef || [...this.channels].find((x) => x.matches(m));
        if (!c) return;
        c.emit('unsubscribed', m);
        if (c.status !== 'closed') c.setStatus('pending'); // ended by the server (token expiry)
        return;
      }
      case 'error': {
        const err = { code: m.code, message: m.message, retryAfter: m.retry_after, channel: byRef };
        if (byRef) {
          byRef.lastError = err;
          byRef.emit('error', err);
          if (m.code === 'rate_limited' || m.code === 'too_many_channels') {
            const wait = (m.retry_after || 5) * 1000;
            setTimeout(() => { if (this.channels.has(byRef)) this.sendSubscribe(byRef); }, wait);
          } else if (FINAL_ERRORS.has(m.code)) {
            byRef.setStatus('failed');
          }
        }
        this.emit('error', err);
        return;
      }
      default:
        if (!CHANNEL_EVENTS.includes(m.type)) return;
        for (const c of this.channels) if (c.matches(m)) c.handle(m);
    }
  }

  // ---- Server-Sent Events: one stream per channel ----
  sseUrl(channel) {
    const q = new URLSearchParams(textParams(channel.params));
    const since = channel.state.seq !== null ? channel.state.seq : channel.resumeFrom;
    if (since !== undefined && since !== null) q.set('since', String(since));
    const token = channel.token || this.token;
    if (token) q.set('token', token);
    const qs = q.toString().replace(/\+/g, '%20');
    return `${this.httpUrl}/channels/${encodeURIComponent(channel.name)}/events${qs ? '?' + qs : ''}`;
  }

  openSse(channel) {
    if (channel.sse) channel.sse.close();
    clearTimeout(channel.sseTimer);
    const es = new this.EventSource(this.sseUrl(channel));
    channel.sse = es;
    const onEvent = (e) => {
      if (channel.sse !== es) return;
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      this.emit('message', m);
      if (m.type === 'error') { this.route(m); return; }
      channel.handle(m);
    };
    for (const t of CHANNEL_EVENTS) es.addEventListener(t, onEvent);
    es.onopen = () => {
      if (channel.sse !== es) return;
      channel.sseAttempt = 0;
      channel.sseLost = false;
      channel.setStatus('subscribed');
      this.setState('open');
    };
    es.onerror = () => {
      if (channel.sse !== es) return;
      // The browser retries by itself (with Last-Event-ID) unless the server refused the stream.
      if (es.readyState !== 2) {
        if (!channel.sseLost) { channel.sseLost = true; this.reconnects += 1; }
        this.setState('reconnecting');
        return;
      }
      es.close();
      channel.sse = null;
      if (this.stopped || !this.channels.has(channel)) return;
      channel.sseAttempt = (channel.sseAttempt || 0) + 1;
      this.reconnects += 1;
      this.setState('reconnecting');
      channel.sseTimer = setTimeout(() => { if (this.channels.has(channel) && !this.stopped) this.openSse(channel); },
        backoffDelay(channel.sseAttempt, this.backoff));
    };
  }
}

export default RestreamClient;
