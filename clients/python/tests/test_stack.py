"""The Python client against a real Pushpin + backend, started by the Rust e2e test
``client_python`` (backend/tests/e2e/client_python.rs), which passes in the environment:
RESTREAM_WS_URL, RESTREAM_HTTP_URL, RESTREAM_CHANNEL (an items-mode push channel with one
required param ``site``), RESTREAM_PRODUCER_KEY (its producer key), RESTREAM_TOKEN_CHANNEL (a
channel whose access is ``token``) and RESTREAM_TOKEN (a subscriber token naming it).
"""

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from restream_client import Client


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test -p restream --test e2e client_python`")
    return value


def url(path, params):
    return f"{env('RESTREAM_HTTP_URL')}{path}?{urllib.parse.urlencode(params)}"


def http(method, path, params, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url(path, params), data=data, method=method)
    req.add_header("Authorization", f"Bearer {env('RESTREAM_PRODUCER_KEY')}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


def publish(site, method, body=None, item_id=None):
    path = f"/channels/{env('RESTREAM_CHANNEL')}/items" + (f"/{item_id}" if item_id else "")
    return http(method, path, {"site": site}, body)


def server_items(site):
    with urllib.request.urlopen(url(f"/channels/{env('RESTREAM_CHANNEL')}/items", {"site": site}), timeout=10) as res:
        return json.loads(res.read())


async def in_step_with_server(channel, site, timeout=30.0):
    """Waits until the client holds the server's seq; returns the server's page."""
    page = await asyncio.to_thread(server_items, site)
    await channel.wait_for(lambda c: c.seq is not None and c.seq >= page["seq"], timeout)
    return page


def assert_same(channel, page):
    assert channel.seq == page["seq"]
    assert sorted(channel.items, key=lambda i: i["id"]) == page["items"]


def test_items_follow_published_changes_and_equal_the_items_api():
    site = "py-items"
    publish(site, "PUT", [{"id": "a", "v": 1}, {"id": "b", "v": 1}])

    async def run():
        async with Client(env("RESTREAM_WS_URL")) as client:
            ch = await client.subscribe(env("RESTREAM_CHANNEL"), {"site": site})
            await ch.wait_for(lambda c: c.seq is not None, 20)
            first = ch.seq
            assert sorted(i["id"] for i in ch.items) == ["a", "b"]
            assert ch.status == "subscribed" and ch.server_params == {"site": site}
            changes = []
            ch.on(lambda kind, value: changes.append(value) if kind == "change" else None)
            await asyncio.to_thread(publish, site, "POST", {"id": "a", "v": 2, "tags": ["x"]})
            await asyncio.to_thread(publish, site, "POST", {"id": "c", "v": 1})
            await asyncio.to_thread(publish, site, "DELETE", None, "b")
            page = await in_step_with_server(ch, site)
            assert_same(ch, page)
            assert [(c.type, c.id) for c in changes] == [("updated", "a"), ("new", "c"), ("removed", "b")]
            assert not any(c.patch_mismatch for c in changes)
            assert ch.applied == list(range(first + 1, ch.seq + 1))

    asyncio.run(run())


def test_a_dropped_connection_reconnects_and_resumes_without_duplicates():
    site = "py-resume"
    publish(site, "PUT", [{"id": "a", "v": 1}])

    async def run():
        async with Client(env("RESTREAM_WS_URL"), backoff_initial=0.2, backoff_max=1.0) as client:
            ch = await client.subscribe(env("RESTREAM_CHANNEL"), {"site": site})
            await ch.wait_for(lambda c: c.seq is not None, 20)
            first = ch.seq
            await client.drop_connection()
            for v in range(2, 6):  # while the client reconnects, and after
                await asyncio.to_thread(publish, site, "POST", {"id": "a", "v": v})
            await asyncio.to_thread(publish, site, "POST", {"id": "b", "v": 1})
            page = await in_step_with_server(ch, site)
            assert client.reconnects >= 1
            assert_same(ch, page)
            assert ch.applied == list(range(first + 1, ch.seq + 1)), "each event once, none missing"

    asyncio.run(run())


def test_refusals_surface_with_their_codes():
    async def run():
        async with Client(env("RESTREAM_WS_URL")) as client:
            unknown = await client.subscribe("no-such-channel")
            missing = await client.subscribe(env("RESTREAM_CHANNEL"))  # `site` is required
            await unknown.wait_for(lambda c: c.status == "failed", 10)
            await missing.wait_for(lambda c: c.status == "failed", 10)
            assert unknown.last_error.code == "unknown_channel"
            assert missing.last_error.code == "invalid_params"
            assert client.state == "open"

    asyncio.run(run())


def test_tokens_for_the_connection_and_for_one_subscribe():
    channel, token = env("RESTREAM_TOKEN_CHANNEL"), env("RESTREAM_TOKEN")

    async def run():
        async with Client(env("RESTREAM_WS_URL")) as anonymous:
            refused = await anonymous.subscribe(channel)
            await refused.wait_for(lambda c: c.status == "failed", 10)
            assert refused.last_error.code == "unauthorized"
            allowed = await anonymous.subscribe(channel, token=token)
            await allowed.wait_for(lambda c: c.status == "subscribed", 10)
        async with Client(env("RESTREAM_WS_URL"), token=token) as holder:
            ch = await holder.subscribe(channel)
            await ch.wait_for(lambda c: c.status == "subscribed", 10)
            assert ch.last_error is None

    asyncio.run(run())
