"""Shared pytest helpers for the fetcher catalog.

- `upstream`: a local HTTP server on 127.0.0.1 (port 0) whose routes a test sets and which
  records every request it gets.
- `dead_url`: the URL of a port nothing listens on.
- `fetcher`, `metadata`, `fetch`: the test folder's main.py, its metadata and a fetch call;
  every metadata and fetch answer is checked against the JSON Schemas in ../schemas.
- `testdata`: a path in the test folder's testdata/.

No test may reach the network: an autouse guard fails any connection to a host other than
127.0.0.1/localhost, and proxy variables are cleared so urllib connects directly.
"""
import importlib.util
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest

FUNCTIONS = Path(__file__).resolve().parent
SCHEMAS = FUNCTIONS.parent / "schemas"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def load_schema(name):
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


METADATA_SCHEMA = load_schema("fetcher-metadata.schema.json")
RESPONSE_SCHEMA = load_schema("fetch-response.schema.json")


def load_fetcher(folder):
    """Imports folder/main.py under a name of its own (every fetcher's module is `main`)."""
    folder = Path(folder)
    spec = importlib.util.spec_from_file_location("fetcher_" + folder.name, folder / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_metadata(metadata):
    METADATA_SCHEMA.validate(metadata)
    json.dumps(metadata)
    return metadata


def check_response(response, id_field):
    """Validates a fetch answer against the schema, and that every item has the id field."""
    json.dumps(response)
    RESPONSE_SCHEMA.validate(response)
    if response["status_code"] == 200:
        for item in response["result"]:
            assert item.get(id_field) not in (None, ""), "item without %s: %r" % (id_field, item)
    return response


class Seen:
    """One request the upstream got."""

    def __init__(self, method, target, headers):
        parts = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = parts.path
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.raw_query = parts.query
        self.headers = {k.lower(): v for k, v in headers.items()}

    def __repr__(self):
        return "Seen(%s %s)" % (self.method, self.target)


class Route:
    """What the upstream answers on one path.

    With `etag` / `last_modified`, 200 answers carry that header and a request presenting the
    same value in If-None-Match / If-Modified-Since gets a 304. `delay` (seconds) holds the
    answer back, for timeout tests.
    """

    def __init__(self, body=b"", status=200, headers=None, etag=None, last_modified=None, delay=0):
        if isinstance(body, Path):
            body = body.read_bytes()
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.status = status
        self.headers = {"Content-Type": "application/json"}
        self.headers.update(headers or {})
        self.etag = etag
        self.last_modified = last_modified
        self.delay = delay

    def answer(self, seen):
        if self.delay:
            time.sleep(self.delay)
        headers = dict(self.headers)
        if self.etag:
            headers["ETag"] = self.etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        unchanged = (self.etag and seen.headers.get("if-none-match") == self.etag) or (
            self.last_modified and seen.headers.get("if-modified-since") == self.last_modified
        )
        if self.status == 200 and unchanged:
            return 304, headers, b""
        return self.status, headers, self.body


class Upstream:
    """A local HTTP server: tests set routes, fetchers call it, tests read `requests`."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen = Seen("GET", self.path, self.headers)
                upstream.requests.append(seen)
                route = upstream.routes.get(seen.path) or upstream.routes.get("*")
                if route is None:
                    status, headers, body = 404, {"Content-Type": "application/json"}, b'{"error": "no route"}'
                else:
                    status, headers, body = route.answer(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def route(self, path, body=b"", status=200, headers=None, etag=None, last_modified=None, delay=0):
        """Sets the answer for `path` (without query); path "*" answers every unrouted path."""
        self.routes[path] = Route(body, status, headers, etag, last_modified, delay)
        return self.routes[path]

    @property
    def last(self):
        assert self.requests, "the upstream got no request"
        return self.requests[-1]

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def dead_url():
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return "http://127.0.0.1:%d" % port


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fails the test if anything connects to a host other than 127.0.0.1."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    real = socket.create_connection
    escapes = []

    def guarded(address, *args, **kwargs):
        if address[0] not in LOCAL_HOSTS:
            escapes.append(address)
            raise OSError("tests may only connect to 127.0.0.1, not %s" % (address[0],))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    yield
    assert not escapes, "a test tried to reach the network: %r" % escapes


@pytest.fixture
def folder(request):
    """The fetcher folder of the requesting test module."""
    return request.path.parent


@pytest.fixture(name="load_fetcher")
def load_fetcher_fixture():
    """load_fetcher(folder) → that folder's main.py as a module."""
    return load_fetcher


@pytest.fixture
def fetcher(folder):
    return load_fetcher(folder)


@pytest.fixture
def metadata(fetcher):
    return check_metadata(fetcher.lambda_function({"call": "metadata"}, None))


@pytest.fixture
def testdata(folder):
    return lambda name: folder / "testdata" / name


@pytest.fixture
def fetch(fetcher, metadata):
    """fetch(params, keys, state) → the fetcher's answer, checked against the schema."""

    def call(params=None, keys=None, state=None):
        event = {
            "call": "fetch",
            "channel": metadata["name"],
            "params": params or {},
            "keys": keys or {},
            "state": state,
        }
        return check_response(fetcher.lambda_function(event, None), metadata["id_field"])

    return call
