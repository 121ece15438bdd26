"""The restream client over WebSocket (asyncio, ``websockets``): subscribe to channels, keep
each channel's items by the seq rule, reconnect with jittered backoff and resume with ``since``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .state import Change, ChannelState, id_key

log = logging.getLogger("restream_client")

PROTOCOL_VERSION = 1
CHANNEL_EVENTS = ("snapshot", "new", "updated", "removed", "status")
#: Refusals a retry cannot fix: the channel ends in status ``failed``.
FINAL_ERRORS = {
    "unknown_channel", "invalid_params", "unauthorized", "bad_message", "unknown_action",
    "too_many_params", "param_too_long", "url_not_allowed",
}


def backoff_delay(attempt: int, initial: float = 0.5, maximum: float = 15.0, rand: Callable[[], float] = random.random) -> float:
    """Seconds before reconnect ``attempt`` (1-based): exponential, capped, jittered in [0.5, 1]."""
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + rand() / 2)


def _text_params(params: Optional[dict]) -> dict[str, str]:
    out = {}
    for k, v in (params or {}).items():
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


class RestreamError(Exception):
    """An ``error`` message from the server (``code``, ``retry_after``)."""

    def __init__(self, code: str, message: str, retry_after: Optional[int] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


Listener = Callable[[str, Any], None]


class Channel:
    """One subscription: ``items``, ``seq``, ``health`` and the changes as they apply.

    Listen with ``on(fn)`` (``fn(kind, value)`` for kinds ``change``, ``status``, ``error``,
    ``subscribed``, ``unsubscribed``, ``ignored``) or iterate ``changes()``.
    """

    def __init__(self, client: "Client", name: str, params: Optional[dict], id_field: str, token: Optional[str], since: Optional[int]):
        self.client = client
        self.name = name
        self.params = dict(params or {})
        self.server_params: Optional[dict[str, str]] = None
        self.token = token
        self.resume_from = since
        self.state = ChannelState(id_field)
        self.status = "pending"  # pending | subscribed | failed | closed
        self.health = "unknown"  # unknown | ok | degraded
        self.last_status: Optional[dict] = None
        self.last_error: Optional[RestreamError] = None
        #: Seqs of the events applied, in order (the last 10,000): a duplicate would show here.
        self.applied: list[int] = []
        self.ref: Optional[str] = None
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()

    @property
    def items(self) -> list[dict]:
        return list(self.state.items.values())

    @property
    def seq(self) -> Optional[int]:
        return self.state.seq

    def get(self, item_id: Any) -> Optional[dict]:
        key = id_key(item_id)
        return self.state.items.get(key) if key is not None else None

    def on(self, listener: Listener) -> Callable[[], None]:
        """Calls ``listener(kind, value)`` for every change and notice; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, kind: str, value: Any) -> None:
        for fn in list(self._listeners):
            try:
                fn(kind, value)
            except Exception:  # a listener's bug must not stop the stream
                log.exception("restream listener failed")
        self._changed.set()

    async def changes(self):
        """Yields every applied :class:`Change` from now on."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        remove = self.on(lambda kind, value: queue.put_nowait(value) if kind == "change" else None)
        try:
            while True:
                yield await queue.get()
        finally:
            remove()

    async def wait_for(self, predicate: Callable[["Channel"], bool], timeout: float) -> None:
        """Waits until ``predicate(channel)`` holds (checked after each change or notice)."""
        async def loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)

    def matches(self, m: dict) -> bool:
        if m.get("channel") != self.name:
            return False
        server = _text_params(m.get("params"))
        if self.server_params is not None:
            return server == self.server_params
        return all(server.get(k) == v for k, v in _text_params(self.params).items())

    def subscribe_message(self, ref: str) -> dict:
        m: dict[str, Any] = {"action": "subscribe", "channel": self.name, "ref": ref}
        if self.params:
            m["params"] = self.params
        since = self.state.seq if self.state.seq is not None else self.resume_from
        if since is not None:
            m["since"] = since
        if self.token:
            m["token"] = self.token
        return m

    def _handle(self, m: dict) -> Optional[str]:
        """Applies a channel message; returns ``gap`` when the caller must resync."""
        if self.server_params is None and "params" in m:
            self.server_params = _text_params(m["params"])
        if m["type"] == "status":
            self.health = m.get("status", "unknown")
            self.last_status = m
            self._emit("status", m)
            return None
        result = self.state.apply(m)
        if not result.applied:
            self._emit("ignored", (result.reason, m))
            return result.reason
        if m["type"] != "snapshot":
            self.applied.append(m["seq"])
            del self.applied[:-10000]
        self._emit("change", result.change)
        return None

    async def unsubscribe(self) -> None:
        await self.client.unsubscribe(self)


class Client:
    """A connection to restream at ``url`` (``ws://host:7999/ws``). ``token``: a JWT for the
    whole connection (sent as ``Authorization: Bearer``). Use as ``async with Client(url) as c``.
    """

    def __init__(self, url: str, *, token: Optional[str] = None, backoff_initial: float = 0.5,
                 backoff_max: float = 15.0, open_timeout: float = 10.0):
        self.url = url
        self.token = token
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.channels: list[Channel] = []
        self.state = "closed"  # connecting | open | reconnecting | closed
        self.reconnects = 0
        self.errors: list[RestreamError] = []
        self._ws: Optional[ClientConnection] = None
        self._ready = False
        self._closed = False
        self._task: Optional[asyncio.Task] = None
        self._next_ref = 1
        self._state_listeners: list[Callable[[str], None]] = []
        self._timers: set[asyncio.Task] = set()

    async def __aenter__(self) -> "Client":
        self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def on_state(self, listener: Callable[[str], None]) -> None:
        self._state_listeners.append(listener)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            for fn in list(self._state_listeners):
                fn(state)

    def start(self) -> None:
        """Starts the connection loop (done by ``async with``)."""
        if self._task is None:
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def subscribe(self, name: str, params: Optional[dict] = None, *, id_field: str = "id",
                        token: Optional[str] = None, since: Optional[int] = None) -> Channel:
        """Adds a subscription (sent now if connected, else on connect) and returns it."""
        channel = Channel(self, name, params, id_field, token, since)
        self.channels.append(channel)
        self.start()
        if self._ready:
            await self._send_subscribe(channel)
        return channel

    async def unsubscribe(self, channel: Channel) -> None:
        if channel not in self.channels:
            return
        self.channels.remove(channel)
        channel.status = "closed"
        m: dict[str, Any] = {"action": "unsubscribe", "channel": channel.name}
        if channel.params:
            m["params"] = channel.params
        await self._send(m)

    async def close(self) -> None:
        """Closes the connection; no reconnect."""
        self._closed = True
        for t in list(self._timers):
            t.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self._set_state("closed")

    async def drop_connection(self) -> None:
        """Closes the current socket as a network failure would: the client reconnects."""
        if self._ws is not None:
            await self._ws.close()

    async def _run(self) -> None:
        attempt = 0
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        while not self._closed:
            self._set_state("reconnecting" if attempt else "connecting")
            try:
                async with connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                                   max_size=None) as ws:
                    self._ws = ws
                    async for raw in ws:
                        if isinstance(raw, bytes):
                            continue
                        try:
                            m = json.loads(raw)
                        except ValueError:
                            log.warning("restream sent a message that is not JSON")
                            continue
                        if m.get("type") == "ready":
                            attempt = 0
                            self._ready = True
                            self._set_state("open")
                            for ch in list(self.channels):
                                if ch.status != "failed":  # refused: not asked for again
                                    await self._send_subscribe(ch)
                        else:
                            await self._route(m)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as e:
                log.info("restream connection lost: %s", e)
            finally:
                self._ws = None
                self._ready = False
            if self._closed:
                break
            attempt += 1
            self.reconnects += 1
            self._set_state("reconnecting")
            await asyncio.sleep(backoff_delay(attempt, self.backoff_initial, self.backoff_max))

    async def _send(self, m: dict) -> None:
        if self._ws is not None and self._ready:
            try:
                await self._ws.send(json.dumps(m))
            except ConnectionClosed:
                pass  # the run loop reconnects and resubscribes

    async def _send_subscribe(self, channel: Channel) -> None:
        channel.ref = f"r{self._next_ref}"
        self._next_ref += 1
        await self._send(channel.subscribe_message(channel.ref))

    def _later(self, delay: float, channel: Channel) -> None:
        async def resend() -> None:
            await asyncio.sleep(delay)
            if channel in self.channels:
                await self._send_subscribe(channel)
        task = asyncio.get_running_loop().create_task(resend())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _route(self, m: dict) -> None:
        ref = m.get("ref")
        by_ref = next((c for c in self.channels if ref is not None and c.ref == ref), None)
        kind = m.get("type")
        if kind in ("subscribed", "unsubscribed"):
            ch = by_ref or next((c for c in self.channels if c.matches(m)), None)
            if ch is None:
                return
            if kind == "subscribed":
                ch.server_params = _text_params(m.get("params"))
                ch.status = "subscribed"
            else:
                ch.status = "pending"  # ended by the server (an expired token)
            ch._emit(kind, m)
        elif kind == "error":
            err = RestreamError(m.get("code", ""), m.get("message", ""), m.get("retry_after"))
            self.errors.append(err)
            if by_ref is not None:
                by_ref.last_error = err
                if err.code in ("rate_limited", "too_many_channels"):
                    self._later(float(err.retry_after or 5), by_ref)
                elif err.code in FINAL_ERRORS:
                    by_ref.status = "failed"
                by_ref._emit("error", err)
        elif kind in CHANNEL_EVENTS:
            for ch in list(self.channels):
                if ch.matches(m) and ch._handle(m) == "gap":
                    await self._send_subscribe(ch)  # resume from the last applied seq
