"""The seq rule and JSON Patch, as the JavaScript client's node tests check them."""

import pytest

from restream_client import ChannelState, PatchError, apply_patch, backoff_delay


def snap(seq, items, **extra):
    return {"type": "snapshot", "channel": "c", "params": {}, "seq": seq, "items": items, **extra}


def ev(kind, seq, item, **extra):
    return {"type": kind, "channel": "c", "params": {}, "seq": seq, "item": item, **extra}


def test_events_before_the_first_snapshot_are_ignored():
    s = ChannelState()
    assert s.apply(ev("new", 2, {"id": "a"})).reason == "no_snapshot"
    assert s.apply(snap(2, [{"id": "a"}, {"id": "b"}])).applied
    assert list(s.items) == ["a", "b"] and s.seq == 2


def test_events_apply_in_order_and_repeats_are_duplicates():
    s = ChannelState()
    s.apply(snap(1, [{"id": "a", "v": 1}]))
    assert s.apply(ev("new", 2, {"id": "b", "v": 1})).applied
    up = s.apply(ev("updated", 3, {"id": "a", "v": 2}, patch=[{"op": "replace", "path": "/v", "value": 2}]))
    assert up.applied and not up.change.patch_mismatch and up.change.previous == {"id": "a", "v": 1}
    assert s.apply(ev("removed", 4, {"id": "b", "v": 1})).applied
    assert list(s.items.values()) == [{"id": "a", "v": 2}]
    for kind, seq in [("new", 2), ("updated", 3), ("removed", 4)]:
        assert s.apply(ev(kind, seq, {"id": "b"}, patch=[])).reason == "duplicate"
    assert s.seq == 4


def test_a_gap_is_not_applied():
    s = ChannelState()
    s.apply(snap(5, []))
    assert s.apply(ev("new", 7, {"id": "x"})).reason == "gap"
    assert s.seq == 5 and not s.items


def test_a_snapshot_applies_when_newer_or_a_reset():
    s = ChannelState()
    s.apply(snap(3, [{"id": "a"}]))
    assert s.apply(snap(3, [{"id": "z"}])).reason == "duplicate"
    assert s.apply(snap(9, [{"id": "b"}])).applied and list(s.items) == ["b"]
    r = s.apply(snap(1, [{"id": "c"}], reset=True))
    assert r.applied and r.change.reset and list(s.items) == ["c"] and s.seq == 1


def test_a_patch_that_disagrees_with_its_item_is_flagged_and_the_item_wins():
    s = ChannelState()
    s.apply(snap(1, [{"id": "a", "v": 1}]))
    r = s.apply(ev("updated", 2, {"id": "a", "v": 3}, patch=[{"op": "replace", "path": "/v", "value": 2}]))
    assert r.change.patch_mismatch and s.items["a"] == {"id": "a", "v": 3}
    r = s.apply(ev("updated", 3, {"id": "q"}, patch=[]))
    assert r.change.patch_mismatch, "an update of an unknown item is flagged"


def test_ids_follow_the_id_field_and_compare_as_text():
    s = ChannelState("code")
    s.apply(snap(1, [{"code": 7}, {"n": "no id"}]))
    assert list(s.items) == ["7"]
    s.apply(ev("removed", 2, {"code": "7"}))
    assert not s.items


def test_json_patch_operations():
    doc = {"a": 1, "b": {"c": [1, 2, 3]}, "x/y": 0, "m~n": 1}
    out = apply_patch(doc, [
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "add", "path": "/b/c/1", "value": 9},
        {"op": "add", "path": "/b/c/-", "value": 4},
        {"op": "remove", "path": "/b/c/0"},
        {"op": "move", "from": "/x~1y", "path": "/z"},
        {"op": "copy", "from": "/a", "path": "/m~0n"},
        {"op": "test", "path": "/z", "value": 0},
    ])
    assert out == {"a": 2, "b": {"c": [9, 2, 3, 4]}, "z": 0, "m~n": 2}
    assert doc["b"]["c"] == [1, 2, 3], "the input is never modified"
    for patch in ([{"op": "remove", "path": "/nope"}], [{"op": "test", "path": "/a", "value": 5}],
                  [{"op": "add", "path": "/b/c/9", "value": 1}], [{"op": "jump", "path": "/a"}], "x"):
        with pytest.raises(PatchError):
            apply_patch(doc, patch)


def test_backoff_grows_is_capped_and_jittered():
    assert [backoff_delay(n, 0.1, 1.0, lambda: 1.0) for n in (1, 2, 3, 4, 5, 9)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay(3, 0.1, 1.0, lambda: 0.0) == pytest.approx(0.2)
