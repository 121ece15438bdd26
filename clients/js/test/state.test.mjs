// The seq rule of docs/protocol.md: snapshot first, nothing applied twice, gaps detected,
// `updated` applied by patch and checked against its item.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChannelState, backoffDelay } from '../restream.js';

const snap = (seq, items, extra = {}) => ({ type: 'snapshot', channel: 'c', params: {}, seq, items, ...extra });
const ev = (type, seq, item, extra = {}) => ({ type, channel: 'c', params: {}, seq, item, ...extra });
const ids = (s) => [...s.items.keys()];

test('events before the first snapshot are ignored', () => {
  const s = new ChannelState();
  assert.deepEqual(s.apply(ev('new', 2, { id: 'a' })), { applied: false, reason: 'no_snapshot' });
  assert.equal(s.seq, null);
  assert.ok(s.apply(snap(2, [{ id: 'a' }, { id: 'b' }])).applied);
  assert.deepEqual(ids(s), ['a', 'b']);
  assert.equal(s.seq, 2);
});

test('new, updated and removed apply in seq order; repeats are duplicates', () => {
  const s = new ChannelState();
  s.apply(snap(1, [{ id: 'a', v: 1 }]));
  assert.ok(s.apply(ev('new', 2, { id: 'b', v: 1 })).applied);
  const up = s.apply(ev('updated', 3, { id: 'a', v: 2 }, { patch: [{ op: 'replace', path: '/v', value: 2 }] }));
  assert.equal(up.change.patchMismatch, false);
  assert.deepEqual(up.change.previous, { id: 'a', v: 1 });
  assert.ok(s.apply(ev('removed', 4, { id: 'b', v: 1 })).applied);
  assert.deepEqual([...s.items.values()], [{ id: 'a', v: 2 }]);
  // A resume replays what was already applied: all dropped.
  for (const [type, seq] of [['new', 2], ['updated', 3], ['removed', 4]]) {
    assert.deepEqual(s.apply(ev(type, seq, { id: 'b' }, { patch: [] })), { applied: false, reason: 'duplicate' });
  }
  assert.equal(s.seq, 4);
});

test('an event past the next seq is a gap and is not applied', () => {
  const s = new ChannelState();
  s.apply(snap(5, []));
  const r = s.apply(ev('new', 7, { id: 'x' }));
  assert.deepEqual(r, { applied: false, reason: 'gap', expected: 6 });
  assert.equal(s.seq, 5);
  assert.equal(s.items.size, 0);
});

test('a snapshot applies only when newer, or when it is a reset', () => {
  const s = new ChannelState();
  s.apply(snap(3, [{ id: 'a' }]));
  assert.deepEqual(s.apply(snap(3, [{ id: 'z' }])), { applied: false, reason: 'duplicate' });
  assert.ok(s.apply(snap(9, [{ id: 'b' }])).applied);
  assert.deepEqual(ids(s), ['b']);
  // A channel deleted by retention starts again at seq 1: the reset snapshot replaces anyway.
  const r = s.apply(snap(1, [{ id: 'c' }], { reset: true }));
  assert.ok(r.applied && r.change.reset);
  assert.deepEqual(ids(s), ['c']);
  assert.equal(s.seq, 1);
});

test('an update whose patch does not give its item is flagged, and the item wins', () => {
  const s = new ChannelState();
  s.apply(snap(1, [{ id: 'a', v: 1 }]));
  const wrong = s.apply(ev('updated', 2, { id: 'a', v: 3 }, { patch: [{ op: 'replace', path: '/v', value: 2 }] }));
  assert.ok(wrong.applied && wrong.change.patchMismatch);
  assert.deepEqual(s.items.get('a'), { id: 'a', v: 3 });
  const failing = s.apply(ev('updated', 3, { id: 'a', v: 4 }, { patch: [{ op: 'remove', path: '/nope' }] }));
  assert.ok(failing.change.patchMismatch);
  const unknown = s.apply(ev('updated', 4, { id: 'q', v: 1 }, { patch: [] }));
  assert.ok(unknown.change.patchMismatch, 'an update of an unknown item is flagged');
  assert.deepEqual(s.items.get('q'), { id: 'q', v: 1 });
});

test('ids follow the id field and compare as text', () => {
  const s = new ChannelState('code');
  s.apply(snap(1, [{ code: 7, n: 1 }, { n: 'no id' }]));
  assert.deepEqual(ids(s), ['7']);
  s.apply(ev('removed', 2, { code: '7' }));
  assert.equal(s.items.size, 0);
});

test('backoff grows, is capped and jittered', () => {
  const lo = { initialMs: 100, maxMs: 1000, random: () => 0 };
  const hi = { ...lo, random: () => 1 };
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, hi)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 5].map((n) => backoffDelay(n, lo)), [50, 100, 500]);
});
