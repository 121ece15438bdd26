"""The deploy drill's side of the wire: a fake upstream whose data the test changes (and which
counts its calls), the ECS task metadata endpoint v4 stand-in, plain HTTP GETs, and WebSocket
subscribers (aiohttp) that reconnect to another task when theirs goes away and resume with
`since`, the way docs/protocol.md tells clients to.
"""
import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url, headers=None, timeout=5.0):
    """(status, body text) of a GET; (None, reason) when nothing answers."""
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


class _JsonHandler(BaseHTTPRequestHandler):
    """Answers with JSON documents; quiet."""

    def send_json(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server:
    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Upstream(_Server):
    """GET /items: the current items; `add()` makes one more (one `new` event downstream)."""

    def __init__(self):
        self.items, self.calls, self.lock = [{"id": "seed", "n": 0}], [], threading.Lock()
        outer = self

        class Handler(_JsonHandler):
            def do_GET(self):
                with outer.lock:
                    outer.calls.append(time.monotonic())
                    doc = {"items": outer.items}
                self.send_json(doc)

        super().__init__(Handler)

    def add(self):
        with self.lock:
            n = len(self.items)
            self.items = self.items + [{"id": f"e{n:03}", "n": n}]
        return f"e{n:03}"


class TaskMetadata(_Server):
    """ECS task metadata endpoint v4: `${ECS_CONTAINER_METADATA_URI_V4}` answers the container
    document (AWS docs: task-metadata-endpoint-v4-response-examples), `/task` the task's."""

    def __init__(self):
        self.containers, self.asked = {}, {}
        outer = self

        class Handler(_JsonHandler):
            def do_GET(self):
                parts = self.path.strip("/").split("/")
                entry = outer.containers.get(parts[1]) if len(parts) >= 2 and parts[0] == "v4" else None
                if entry is None:
                    self.send_error(404)
                    return
                outer.asked[parts[1]] = outer.asked.get(parts[1], 0) + 1
                self.send_json(outer.task_doc(entry) if parts[2:] == ["task"] else outer.container_doc(entry))

        super().__init__(Handler)

    def register(self, task, container, address):
        """The URI to give the container as ECS_CONTAINER_METADATA_URI_V4."""
        key = f"{task}-{container}"
        self.containers[key] = {"task": task, "name": container, "address": address}
        return f"{self.url}/v4/{key}"

    def container_doc(self, entry):
        ip = entry["address"]
        return {
            "DockerId": f"{entry['task']}-{entry['name']}", "Name": entry["name"],
            "DockerName": f"ecs-restream-{entry['name']}", "Image": f"restream-{entry['name']}:drill",
            "Labels": {"com.amazonaws.ecs.task-arn": self.task_arn(entry)},
            "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING", "Type": "NORMAL",
            "Limits": {"CPU": 2}, "LogDriver": "awslogs",
            "ContainerARN": f"arn:aws:ecs:us-east-1:123456789012:container/{entry['task']}/{entry['name']}",
            "Networks": [{
                "NetworkMode": "awsvpc", "IPv4Addresses": [ip], "AttachmentIndex": 0,
                "MACAddress": "0e:00:00:00:00:01", "IPv4SubnetCIDRBlock": ip.rsplit(".", 1)[0] + ".0/24",
                "PrivateDNSName": "ip-" + ip.replace(".", "-") + ".ec2.internal",
                "SubnetGatewayIpv4Address": ip.rsplit(".", 1)[0] + ".254/24",
            }],
        }

    def task_doc(self, entry):
        return {
            "Cluster": "restream", "TaskARN": self.task_arn(entry), "Family": "restream",
            "Revision": "1", "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
            "LaunchType": "FARGATE", "AvailabilityZone": "us-east-1a",
            "Containers": [self.container_doc(e) for e in self.containers.values() if e["task"] == entry["task"]],
        }

    @staticmethod
    def task_arn(entry):
        return f"arn:aws:ecs:us-east-1:123456789012:task/restream/{entry['task']}"


class Subscriber:
    """One WebSocket client subscribed to `channel`: every channel message it got, in order.
    When its connection ends it reconnects to `pick()`'s task and resumes with `since`."""

    def __init__(self, name, channel, pick):
        self.name, self.channel, self.pick = name, channel, pick
        self.messages, self.events, self.snapshots, self.urls = [], [], [], []
        self.last_seq, self.stopped, self.errors, self.resumed = None, False, [], []

    async def run(self, session):
        while not self.stopped:
            url = self.pick(self)
            try:
                async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                    self.urls.append(url)
                    subscribe = {"action": "subscribe", "channel": self.channel}
                    if self.last_seq is not None:
                        subscribe["since"] = self.last_seq
                        self.resumed.append(self.last_seq)
                    await ws.send_json(subscribe)
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.on(json.loads(msg.data))
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                self.errors.append(f"{url}: {e!r}")
            if not self.stopped:
                await asyncio.sleep(0.3)

    def on(self, msg):
        self.messages.append(msg)
        kind, seq = msg.get("type"), msg.get("seq")
        if kind == "snapshot":
            self.snapshots.append(msg)
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
        elif kind in ("new", "updated", "removed"):
            self.events.append((seq, kind, msg["item"]["id"], len(self.urls)))
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq

    def __repr__(self):
        kinds = [m.get("type") + (f"@{m['seq']}" if "seq" in m else "") for m in self.messages]
        return f"<{self.name} via {self.urls} got {kinds[-12:]} errors {self.errors[-2:]}>"

    def problems(self, base, final):
        """What differs from: every event after `base` up to `final`, in order, exactly once; a
        second copy allowed only as docs/scaling.md's resume overlap (Known limits): on a
        resumed connection, of the event at or right after its `since` (clients ignore a `seq`
        they already have, docs/protocol.md)."""
        out, seen, first = [], set(), []
        for seq, _, _, connection in self.events:
            if seq not in seen:
                seen.add(seq)
                first.append(seq)
            elif connection < 2 or seq > self.resumed[connection - 2] + 1:
                out.append(f"{self.name}: seq {seq} again on connection {connection}")
        if first != list(range(base + 1, final + 1)):
            missing = sorted(set(range(base + 1, final + 1)) - seen)
            out.append(f"{self.name}: events out of order or missing {missing}")
        if out:
            on = [f"{event[0]}@{event[3]}" for event in self.events]
            out.append(f"{self.name}: events (seq@connection) {on}; connections {self.urls}, "
                       f"resumed with since {self.resumed}")
        resets = [s["seq"] for s in self.snapshots if s.get("reset")]
        if resets:
            out.append(f"{self.name}: reset snapshots at seq {resets} (a `since` was not served)")
        return out

    def overlaps(self):
        """Events received twice (the resume overlap)."""
        seqs = [event[0] for event in self.events]
        return len(seqs) - len(set(seqs))


class Subscribers:
    """WebSocket clients on one asyncio loop in a background thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session = asyncio.run_coroutine_threadsafe(self._session(), self.loop).result()
        self.clients, self.futures = [], []

    async def _session(self):
        return aiohttp.ClientSession()

    def add(self, name, channel, pick):
        client = Subscriber(name, channel, pick)
        self.clients.append(client)
        self.futures.append(asyncio.run_coroutine_threadsafe(client.run(self.session), self.loop))
        return client

    def close(self):
        for client in self.clients:
            client.stopped = True

        async def shutdown():
            await self.session.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def wait_until(what, predicate, timeout, interval=0.2, clients=()):
    """Polls `predicate` until it returns something truthy; fails naming `what` (and showing
    what `clients` got)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            shown = "".join(f"\n  {c!r}" for c in clients)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{shown}")
        time.sleep(interval)
