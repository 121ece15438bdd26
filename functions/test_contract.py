"""The catalog-wide contract: every functions/*/main.py, checked the same way.

Each fetcher folder must have function.json (Apex), main.py exposing lambda_function, and
testdata/contract.json saying how to call it against a local server:
{"env": "<BASE_URL variable>", "response": "<recorded file in testdata/>", "params": {..}, "keys": {..}}
"""
import ast
import json
import sys
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parent
FOLDERS = sorted(p.parent for p in FUNCTIONS.glob("*/main.py"))
IDS = [f.name for f in FOLDERS]
KEY_VALUE = "contract-secret-%s"
HTTP_BLOCK = ("# --- upstream HTTP", "# --- the fetcher ---")


@pytest.fixture(params=FOLDERS, ids=IDS)
def folder(request):
    """Overrides conftest's `folder`: one run per fetcher folder."""
    return request.param


@pytest.fixture
def manifest(folder):
    path = folder / "testdata" / "contract.json"
    assert path.is_file(), "%s needs testdata/contract.json" % folder.name
    m = json.loads(path.read_text())
    assert set(m) == {"env", "response", "params", "keys"}
    assert (folder / "testdata" / m["response"]).is_file()
    return m


@pytest.fixture
def keys(metadata):
    """A distinctive value for every key the fetcher declares."""
    return {k: KEY_VALUE % k for k in metadata["keys"]}


@pytest.fixture
def served(upstream, monkeypatch, manifest):
    monkeypatch.setenv(manifest["env"], upstream.url)
    return upstream


def test_there_are_fetchers():
    # usgs-earthquakes and hn-top are declarative channels now (channels/*.toml).
    assert len(FOLDERS) >= 5


def test_function_json(folder):
    config = json.loads((folder / "function.json").read_text())
    assert config["handler"] == "main.lambda_function"
    assert config["runtime"].startswith("python3")


def test_project_json():
    config = json.loads((FUNCTIONS.parent / "project.json").read_text())
    assert config["handler"] == "main.lambda_function"


def test_metadata_is_valid(metadata, folder):
    # `metadata` (conftest) validates against schemas/fetcher-metadata.schema.json.
    for name, decl in metadata.get("params", {}).items():
        assert decl.get("description"), "%s: param %s needs a description" % (folder.name, name)


def test_channel_names_are_unique(load_fetcher):
    names = [load_fetcher(f).lambda_function({"call": "metadata"}, None)["name"] for f in FOLDERS]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, "channel names used twice: %s" % duplicates


def test_only_the_standard_library(folder):
    tree = ast.parse((folder / "main.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "%s: relative import; each folder deploys on its own" % folder.name
            modules.add(node.module.split(".")[0])
    outside = {m for m in modules if m not in sys.stdlib_module_names}
    assert not outside, "%s imports %s; fetchers are stdlib only" % (folder.name, sorted(outside))


def test_base_url_comes_from_the_environment(folder, manifest, metadata):
    source = (folder / "main.py").read_text()
    assert 'os.environ.get("%s"' % manifest["env"] in source
    # restream runs a fetcher with an allowlisted environment: undeclared variables are unset.
    assert manifest["env"] in metadata.get("env", []), "%s: declare %s in metadata env" % (
        folder.name,
        manifest["env"],
    )


def test_shared_http_block_is_identical_everywhere():
    blocks = {}
    for f in FOLDERS:
        source = (f / "main.py").read_text()
        if HTTP_BLOCK[0] in source:
            blocks[f.name] = source[source.index(HTTP_BLOCK[0]):source.index(HTTP_BLOCK[1])]
    assert len(set(blocks.values())) <= 1, "the upstream HTTP blocks differ: copy the newest to %s" % sorted(blocks)


def test_fetch_recorded_response(served, fetch, manifest, metadata, keys, testdata):
    served.route("*", testdata(manifest["response"]))
    r = fetch(manifest["params"], keys)
    assert r["status_code"] == 200, r
    assert r["result"], "the recorded response should give items"
    assert len(served.requests) == 1, "one upstream request per poll"
    for name in metadata["params"]:
        assert name in manifest["params"] or not metadata["params"][name].get("required")


def test_defaults_are_enough(served, fetch, manifest, metadata, keys, testdata):
    required = [n for n, d in metadata.get("params", {}).items() if d.get("required")]
    params = {n: manifest["params"][n] for n in required}
    served.route("*", testdata(manifest["response"]))
    assert fetch(params, keys)["status_code"] == 200


@pytest.mark.parametrize("status", [404, 500])
def test_upstream_error_status_is_kept(served, fetch, manifest, keys, status):
    served.route("*", {"message": "broken: %s" % " ".join(keys.values())}, status=status)
    r = fetch(manifest["params"], keys)
    assert r["status_code"] == status
    assert "retry_after" not in r


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after(served, fetch, manifest, keys, status):
    served.route("*", "", status=status, headers={"Retry-After": "17"})
    r = fetch(manifest["params"], keys)
    assert r["status_code"] == status
    assert r["retry_after"] == 17


def test_invalid_json_is_502(served, fetch, manifest, keys):
    served.route("*", "<html>not json</html>")
    assert fetch(manifest["params"], keys)["status_code"] == 502


def test_unreachable_is_502(fetch, manifest, keys, monkeypatch, dead_url):
    monkeypatch.setenv(manifest["env"], dead_url)
    assert fetch(manifest["params"], keys)["status_code"] == 502


def test_missing_keys_are_401(served, fetch, manifest, metadata, testdata):
    if not metadata["keys"]:
        pytest.skip("no keys")
    served.route("*", testdata(manifest["response"]))
    for missing in metadata["keys"]:
        keys = {k: KEY_VALUE % k for k in metadata["keys"] if k != missing}
        assert fetch(manifest["params"], keys) == {"status_code": 401, "result": "missing key %s" % missing}
    assert served.requests == []


def test_key_values_never_appear_in_answers(served, fetch, manifest, metadata, keys, monkeypatch, dead_url):
    if not metadata["keys"]:
        pytest.skip("no keys")
    echo = {"message": "denied for %s" % " ".join(keys.values()), "fault": {"faultstring": "x %s" % keys}}
    answers = []
    for status in (400, 401, 403, 429, 500):
        served.route("*", echo, status=status)
        answers.append(fetch(manifest["params"], keys))
    served.route("*", "not json %s" % keys)
    answers.append(fetch(manifest["params"], keys))
    monkeypatch.setenv(manifest["env"], "nonsense:%s" % keys)
    answers.append(fetch(manifest["params"], keys))
    monkeypatch.setenv(manifest["env"], dead_url)
    answers.append(fetch(manifest["params"], keys))
    text = json.dumps(answers)
    for value in keys.values():
        assert value not in text


def test_unknown_call_is_400(fetcher):
    assert fetcher.lambda_function({"call": "subscribe"}, None)["status_code"] == 400
