// What a Channel sends and which server messages it takes as its own (no network).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel } from '../restream.js';

test('the subscribe request resumes from the last applied seq and carries the token', () => {
  const ch = new Channel(null, 'usgs-earthquakes', { feed: '2.5_day' }, { token: 't.t.t', since: 7 });
  assert.deepEqual(ch.subscribeMessage('r1'),
    { action: 'subscribe', channel: 'usgs-earthquakes', ref: 'r1', params: { feed: '2.5_day' }, since: 7, token: 't.t.t' });
  ch.state.apply({ type: 'snapshot', channel: 'usgs-earthquakes', params: { feed: '2.5_day' }, seq: 41, items: [] });
  assert.equal(ch.subscribeMessage('r2').since, 41);
  const plain = new Channel(null, 'hn-top', {}, {});
  assert.deepEqual(plain.subscribeMessage('r3'), { action: 'subscribe', channel: 'hn-top', ref: 'r3' });
});

test('messages match by channel and params, defaults included once the server named them', () => {
  const ch = new Channel(null, 'c', { n: 1 }, {});
  assert.ok(ch.matches({ channel: 'c', params: { n: '1', extra: 'default' } }), 'given params are a subset before subscribed');
  assert.ok(!ch.matches({ channel: 'c', params: { n: '2' } }));
  assert.ok(!ch.matches({ channel: 'd', params: { n: '1' } }));
  ch.serverParams = { n: '1', extra: 'default' };
  assert.ok(ch.matches({ channel: 'c', params: { extra: 'default', n: '1' } }));
  assert.ok(!ch.matches({ channel: 'c', params: { n: '1', extra: 'other' } }));
});

test('each event is applied once and recorded; duplicates are reported as ignored', () => {
  const ch = new Channel(null, 'c', {}, {});
  const seen = [];
  ch.on('change', (c) => seen.push([c.type, c.seq]));
  ch.on('ignored', (i) => seen.push(['ignored', i.reason, i.message.seq]));
  const m = (type, seq, extra) => ({ type, channel: 'c', params: {}, seq, ...extra });
  ch.handle(m('new', 1, { item: { id: 'early' } }));
  ch.handle(m('snapshot', 1, { items: [{ id: 'a' }] }));
  ch.handle(m('new', 2, { item: { id: 'b' } }));
  ch.handle(m('new', 2, { item: { id: 'b' } }));
  ch.handle(m('status', 2, { status: 'degraded', code: 'fetcher_failed', error: 'x', retry_in: 3 }));
  assert.deepEqual(seen, [['ignored', 'no_snapshot', 1], ['snapshot', 1], ['new', 2], ['ignored', 'duplicate', 2]]);
  assert.deepEqual(ch.applied, [2]);
  assert.equal(ch.health, 'degraded');
  assert.deepEqual(ch.items.map((i) => i.id), ['a', 'b']);
});
