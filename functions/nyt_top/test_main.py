"""nyt-top against a local server serving recorded Top Stories answers."""
import json

import pytest

KEY = "nyt-secret-key-123"
KEYS = {"api-key": KEY}


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("NYT_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "nyt-top"
    assert metadata["id_field"] == "uri"
    assert metadata["keys"] == ["api-key"]
    assert metadata["poll_interval"] == 100
    assert metadata["params"]["section"]["default"] == "home"
    assert metadata["rate_limit"] == {"per_minute": 5, "per_day": 500}


def test_fetch_items(api, fetch, testdata):
    api.route("/svc/topstories/v2/home.json", testdata("home.json"))
    r = fetch({}, KEYS)
    assert r["status_code"] == 200
    assert r["complete"] is True
    assert [i["uri"] for i in r["result"]] == [
        "nyt://article/0b7a1c55-3f0e-5a6b-9c1d-2e8f4a7b6c01",
        "nyt://article/7d2e9f10-84c3-5b8e-a0f1-6c3b2d1e0f02",
        "nyt://article/c4f5a6b7-1d2e-5f30-8a9b-0c1d2e3f4a03",
    ]
    # short_url is empty on most stories today, so it cannot be the id.
    assert r["result"][0]["short_url"] == ""
    assert "state" not in r
    assert len(api.requests) == 1


def test_key_goes_in_the_query(api, fetch, testdata):
    api.route("/svc/topstories/v2/world.json", testdata("home.json"))
    assert fetch({"section": "world"}, KEYS)["status_code"] == 200
    seen = api.last
    assert seen.path == "/svc/topstories/v2/world.json"
    assert seen.query == {"api-key": KEY}
    assert KEY not in json.dumps(seen.headers)


def test_section_with_a_slash(api, fetch, testdata):
    api.route("/svc/topstories/v2/books/review.json", testdata("home.json"))
    assert fetch({"section": "books/review"}, KEYS)["status_code"] == 200


@pytest.mark.parametrize("section", ["", "nope", "../../svc/other", "home.json?x=", "HOME"])
def test_unknown_section_is_400_without_a_request(api, fetch, section):
    r = fetch({"section": section}, KEYS)
    assert r["status_code"] == 400
    assert "section" in r["result"]
    assert api.requests == []


@pytest.mark.parametrize("keys", [{}, {"api-key": ""}, {"other": "x"}, {"api-key": None}])
def test_missing_key_is_401(api, fetch, keys):
    r = fetch({}, keys)
    assert r == {"status_code": 401, "result": "missing key api-key"}
    assert api.requests == []


def test_key_that_cannot_be_sent_is_401_and_not_echoed(api, fetch):
    r = fetch({}, {"api-key": "bad key\nX-Injected: 1"})
    assert r["status_code"] == 401
    assert "bad key" not in r["result"]
    assert api.requests == []


def test_invalid_key_maps_to_401_without_the_key(api, fetch, testdata):
    api.route("/svc/topstories/v2/home.json", testdata("fault_401.json"), status=401)
    r = fetch({}, KEYS)
    assert r["status_code"] == 401
    assert "Invalid ApiKey" in r["result"]
    assert KEY not in r["result"]


def test_429_with_retry_after(api, fetch, testdata):
    api.route("/svc/topstories/v2/home.json", testdata("fault_429.json"), status=429, headers={"Retry-After": "12"})
    r = fetch({}, KEYS)
    assert r["status_code"] == 429
    assert r["retry_after"] == 12
    assert "quota" in r["result"].lower()


def test_error_text_echoing_the_key_is_scrubbed(api, fetch):
    body = {"fault": {"faultstring": "Quota exceeded for key %s" % KEY}}
    api.route("/svc/topstories/v2/home.json", body, status=429)
    r = fetch({}, KEYS)
    assert r["status_code"] == 429
    assert "retry_after" not in r
    assert KEY not in r["result"]
    assert "***" in r["result"]


@pytest.mark.parametrize("status", [404, 500, 503])
def test_upstream_errors_keep_their_status(api, fetch, status):
    api.route("/svc/topstories/v2/home.json", "<html>error</html>", status=status)
    r = fetch({}, KEYS)
    assert r["status_code"] == status
    assert r["result"] == "NYT answered %d" % status


def test_bad_json_is_502(api, fetch):
    api.route("/svc/topstories/v2/home.json", "{not json")
    r = fetch({}, KEYS)
    assert r == {"status_code": 502, "result": "NYT answered invalid JSON"}


def test_json_without_results_is_502(api, fetch):
    api.route("/svc/topstories/v2/home.json", {"status": "ERROR", "errors": ["oops"]})
    assert fetch({}, KEYS)["status_code"] == 502


def test_unreachable_is_502_without_the_key(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("NYT_BASE_URL", dead_url)
    r = fetch({}, KEYS)
    assert r["status_code"] == 502
    assert r["result"].startswith("NYT unreachable")
    assert KEY not in r["result"]


def test_bad_base_url_error_does_not_leak_the_key(fetch, monkeypatch):
    monkeypatch.setenv("NYT_BASE_URL", "notascheme")
    r = fetch({}, KEYS)
    assert r["status_code"] == 502
    assert KEY not in r["result"]


def test_etag_round_trip(api, fetch, testdata):
    api.route("/svc/topstories/v2/home.json", testdata("home.json"), etag='"v1"')
    first = fetch({}, KEYS)
    assert first["state"] == {"etag": '"v1"'}
    assert "if-none-match" not in api.last.headers
    second = fetch({}, KEYS, first["state"])
    assert api.last.headers["if-none-match"] == '"v1"'
    assert second == {"status_code": 304, "result": [], "state": {"etag": '"v1"'}}
    # A changed front page answers 200 with the new ETag.
    api.route("/svc/topstories/v2/home.json", testdata("home.json"), etag='"v2"')
    third = fetch({}, KEYS, first["state"])
    assert third["status_code"] == 200
    assert third["state"] == {"etag": '"v2"'}


def test_duplicate_stories_are_sent_once(api, fetch):
    story = {"uri": "nyt://article/1", "title": "a"}
    api.route("/svc/topstories/v2/home.json", {"results": [story, story, {"title": "no uri"}]})
    assert fetch({}, KEYS)["result"] == [story]


def test_unknown_call(fetcher):
    assert fetcher.lambda_function({"call": "nope"}, None)["status_code"] == 400
