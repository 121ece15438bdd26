"""One channel's item set, kept by the protocol's seq rule (docs/protocol.md); pure, no I/O.

Also RFC 6902 JSON Patch, to check ``updated`` events against the item they carry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional


class PatchError(ValueError):
    """A JSON Patch operation that cannot apply (including a failed ``test``)."""


def _tokens(pointer: Any) -> list[str]:
    if pointer == "":
        return []
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise PatchError(f"bad JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(arr: list, token: str, for_add: bool) -> int:
    if for_add and token == "-":
        return len(arr)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"bad array index {token!r}")
    i = int(token)
    if i > len(arr) or (not for_add and i == len(arr)):
        raise PatchError(f"array index {i} out of range")
    return i


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, list):
            node = node[_index(node, t, False)]
        elif isinstance(node, dict) and t in node:
            node = node[t]
        else:
            raise PatchError(f"path not found at {t!r}")
    if not isinstance(node, (dict, list)):
        raise PatchError("path does not lead to an object or array")
    return node, tokens[-1]


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens)
    if isinstance(parent, list):
        return parent[_index(parent, last, False)]
    if last not in parent:
        raise PatchError(f"no member {last!r}")
    return parent[last]


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, tokens)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, False))
    if last not in parent:
        raise PatchError(f"no member {last!r}")
    return parent.pop(last)


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens)
    if isinstance(parent, list):
        parent.insert(_index(parent, last, True), value)
    else:
        parent[last] = value
    return doc


def apply_patch(doc: Any, patch: Any) -> Any:
    """Applies an RFC 6902 patch to a copy of ``doc`` and returns it; raises PatchError."""
    if not isinstance(patch, list):
        raise PatchError("a patch is a list of operations")
    out = copy.deepcopy(doc)
    for op in patch:
        if not isinstance(op, dict):
            raise PatchError("an operation is an object")
        path = _tokens(op.get("path"))
        kind = op.get("op")
        if kind == "add":
            out = _add(out, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(out, path)
        elif kind == "replace":
            if path:
                _remove(out, path)
            out = _add(out, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            if op["path"].startswith(op.get("from", "") + "/"):
                raise PatchError("cannot move a value into itself")
            out = _add(out, path, _remove(out, _tokens(op.get("from"))))
        elif kind == "copy":
            out = _add(out, path, copy.deepcopy(_get(out, _tokens(op.get("from")))))
        elif kind == "test":
            if _get(out, path) != op.get("value"):
                raise PatchError(f"test failed at {op['path']}")
        else:
            raise PatchError(f"unknown op {kind!r}")
    return out


def id_key(value: Any) -> Optional[str]:
    """Item ids may be strings or numbers; they compare as text."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass
class Change:
    """One applied message: ``type`` is snapshot, new, updated or removed."""

    type: str
    seq: int
    message: dict
    id: Optional[str] = None
    item: Optional[dict] = None
    previous: Any = None
    patch_mismatch: bool = False
    reset: bool = False


@dataclass
class Applied:
    applied: bool
    reason: Optional[str] = None  # no_snapshot | duplicate | gap | not_an_event
    change: Optional[Change] = None


@dataclass
class ChannelState:
    """A channel's items (id key → item, in arrival order) and the last applied seq.

    The rule: a snapshot applies when its seq is higher than what is held (or it is a reset);
    events before a snapshot, or not above the last seq, are dropped (duplicates after a
    resume); an event past the next seq is a gap (not applied: the caller resyncs); ``updated``
    is applied by its patch and checked against the item it carries, which wins on a mismatch.
    """

    id_field: str = "id"
    seq: Optional[int] = None
    items: dict[str, dict] = field(default_factory=dict)

    def id_of(self, item: Any) -> Optional[str]:
        return id_key(item.get(self.id_field)) if isinstance(item, dict) else None

    def apply(self, m: dict) -> Applied:
        kind = m.get("type")
        if kind == "snapshot":
            if self.seq is not None and m["seq"] <= self.seq and m.get("reset") is not True:
                return Applied(False, "duplicate")
            previous = self.items
            self.items = {}
            for item in m.get("items") or []:
                key = self.id_of(item)
                if key is not None:
                    self.items[key] = item
            self.seq = m["seq"]
            return Applied(True, change=Change("snapshot", m["seq"], m, previous=previous, reset=m.get("reset") is True))
        if kind not in ("new", "updated", "removed"):
            return Applied(False, "not_an_event")
        if self.seq is None:
            return Applied(False, "no_snapshot")
        if m["seq"] <= self.seq:
            return Applied(False, "duplicate")
        if m["seq"] > self.seq + 1:
            return Applied(False, "gap")
        item = m.get("item")
        key = self.id_of(item)
        previous = self.items.get(key) if key is not None else None
        mismatch = False
        if kind == "removed":
            if key is not None:
                self.items.pop(key, None)
        else:
            if kind == "updated":
                mismatch = True
                if previous is not None:
                    try:
                        mismatch = apply_patch(previous, m.get("patch")) != item
                    except PatchError:
                        mismatch = True
            if key is not None:
                self.items[key] = item
        self.seq = m["seq"]
        return Applied(True, change=Change(kind, m["seq"], m, key, item, previous, mismatch))
