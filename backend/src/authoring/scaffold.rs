//! `restream fetchers new NAME`: a working fetcher folder with recorded data and a test.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::channel::is_valid_name;

/// The shipped fetcher whose shared upstream-HTTP block new fetchers start from.
const SOURCE: &str = include_str!("../../../functions/coingecko_price/main.py");
const BLOCK_START: &str = "# --- upstream HTTP";
const BLOCK_END: &str = "# --- the fetcher ---";

const MAIN: &str = r#""""__NAME__: TODO say in one line what this channel streams.

Upstream: TODO the API's documentation URL.
__ENV__ overrides the upstream host (tests point it at a local server).
"""
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import mktime_tz, parsedate_tz

METADATA = {
    "name": "__NAME__",
    "description": "TODO",
    "id_field": "id",
    "api_url": "https://api.example.com/v1/items",
    "doc_url": "https://api.example.com/docs",
    "keys": [],
    "poll_interval": 60,
    # Variables this fetcher reads; restream passes no others (besides PATH, LANG, ...).
    "env": ["__ENV__"],
    "params": {},
}

NAME = "__NAME__"
TIMEOUT = 10
USER_AGENT = "restream-fetcher/1"


def base_url():
    return os.environ.get("__ENV__", "https://api.example.com").rstrip("/")


__BLOCK__# --- the fetcher ---


def fetch(params, keys, state):
    body, new_state = get_json("%s/v1/items" % base_url(), state=state)
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise Answer(502, "%s response has no items list" % NAME)
    response = {"status_code": 200, "result": items, "complete": True}
    if new_state:
        response["state"] = new_state
    return response


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        try:
            return fetch(event.get("params") or {}, event.get("keys") or {}, event.get("state"))
        except Answer as answer:
            return answer.response
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
"#;

const TEST: &str = r#""""__NAME__ against a local server serving testdata/sample.json."""
import pytest

PATH = "/v1/items"


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("__ENV__", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "__NAME__"


def test_items(api, fetch, testdata):
    api.route(PATH, testdata("sample.json"))
    r = fetch({})
    assert r["status_code"] == 200
    assert [i["id"] for i in r["result"]] == ["1", "2"]
    assert len(api.requests) == 1
"#;

const SAMPLE: &str = r#"{"items": [{"id": "1", "title": "first"}, {"id": "2", "title": "second"}]}
"#;

/// Creates `<fetchers dir>/<folder>/` for channel `name`; returns the folder.
pub fn new_fetcher(fetchers_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if !is_valid_name(name) {
        bail!("{name:?} is not a channel name: use 1-64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit");
    }
    let folder = name.replace(['-', '.'], "_");
    let dir = fetchers_dir.join(&folder);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let env = format!("{}_BASE_URL", folder.to_uppercase());
    let start = SOURCE.find(BLOCK_START).context("shared block start")?;
    let end = SOURCE.find(BLOCK_END).context("shared block end")?;
    let fill = |t: &str| t.replace("__NAME__", name).replace("__ENV__", &env);
    let files = [
        ("main.py", fill(MAIN).replace("__BLOCK__", &SOURCE[start..end])),
        ("function.json", "{\"runtime\": \"python3.12\", \"handler\": \"main.lambda_function\"}\n".into()),
        ("test_main.py", fill(TEST)),
        ("testdata/sample.json", SAMPLE.into()),
        (
            "testdata/contract.json",
            format!("{{\"env\": \"{env}\", \"response\": \"sample.json\", \"params\": {{}}, \"keys\": {{}}}}\n"),
        ),
    ];
    std::fs::create_dir_all(dir.join("testdata"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, text) in files {
        std::fs::write(dir.join(file), text).with_context(|| format!("cannot write {file}"))?;
    }
    Ok(dir)
}
