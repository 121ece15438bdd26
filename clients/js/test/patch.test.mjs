// RFC 6902 patches as `updated` events carry them, including the RFC's appendix A cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyPatch, deepEqual, PatchError } from '../restream.js';

test('replace, add and remove on objects and arrays', () => {
  const doc = { a: 1, b: { c: [1, 2, 3] } };
  const out = applyPatch(doc, [
    { op: 'replace', path: '/a', value: 2 },
    { op: 'add', path: '/b/c/1', value: 9 },
    { op: 'add', path: '/b/c/-', value: 4 },
    { op: 'remove', path: '/b/c/0' },
    { op: 'add', path: '/d', value: { e: null } },
  ]);
  assert.deepEqual(out, { a: 2, b: { c: [9, 2, 3, 4] }, d: { e: null } });
  assert.deepEqual(doc, { a: 1, b: { c: [1, 2, 3] } }, 'the input is never modified');
});

test('move, copy and test', () => {
  const out = applyPatch({ foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } }, [
    { op: 'move', from: '/foo/waldo', path: '/qux/thud' },
    { op: 'copy', from: '/qux/corge', path: '/foo/x' },
    { op: 'test', path: '/qux/thud', value: 'fred' },
  ]);
  assert.deepEqual(out, { foo: { bar: 'baz', x: 'grault' }, qux: { corge: 'grault', thud: 'fred' } });
});

test('escaped pointer tokens and replacing the root', () => {
  assert.deepEqual(applyPatch({ 'a/b': 1, 'm~n': 2 }, [
    { op: 'replace', path: '/a~1b', value: 3 },
    { op: 'remove', path: '/m~0n' },
  ]), { 'a/b': 3 });
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: 'replace', path: '', value: [1] }]), [1]);
});

test('operations that cannot apply throw PatchError', () => {
  for (const patch of [
    [{ op: 'remove', path: '/missing' }],
    [{ op: 'replace', path: '/a/b', value: 1 }],
    [{ op: 'add', path: '/list/5', value: 1 }],
    [{ op: 'add', path: '/list/01', value: 1 }],
    [{ op: 'test', path: '/a', value: 2 }],
    [{ op: 'jump', path: '/a' }],
    [{ op: 'add', path: 'a', value: 1 }],
    'not a patch',
  ]) {
    assert.throws(() => applyPatch({ a: 1, list: [0] }, patch), PatchError, JSON.stringify(patch));
  }
});

test('deepEqual ignores key order, not array order', () => {
  assert.ok(deepEqual({ a: 1, b: [1, { c: 2, d: 3 }] }, { b: [1, { d: 3, c: 2 }], a: 1 }));
  assert.ok(!deepEqual([1, 2], [2, 1]));
  assert.ok(!deepEqual({ a: 1 }, { a: 1, b: undefined }));
  assert.ok(!deepEqual({ a: null }, { a: 0 }));
  assert.ok(!deepEqual([], {}));
});
