"""nyt-newswire against a local server serving recorded Times Newswire answers."""
import pytest

KEY = "nyt-secret-key-456"
KEYS = {"api-key": KEY}


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("NYT_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "nyt-newswire"
    assert metadata["id_field"] == "uri"
    assert metadata["keys"] == ["api-key"]
    assert metadata["params"]["source"]["default"] == "all"
    assert metadata["params"]["section"]["default"] == "all"
    # One channel polling at poll_interval stays under the daily limit.
    assert 86400 / metadata["poll_interval"] <= metadata["rate_limit"]["per_day"]


def test_fetch_items(api, fetch, testdata):
    api.route("/svc/news/v3/content/all/all.json", testdata("all_all.json"))
    r = fetch({}, KEYS)
    assert r["status_code"] == 200
    assert len(r["result"]) == 3
    assert all(i["uri"].startswith("nyt://article/") for i in r["result"])
    # A paged feed of recent articles: one that scrolled off was not removed.
    assert not r.get("complete")
    assert len(api.requests) == 1


def test_key_is_the_key_and_section_is_the_section(api, fetch, testdata):
    # The original fetcher sent the section as the api key; check both land where they belong.
    api.route("/svc/news/v3/content/nyt/world.json", testdata("all_all.json"))
    assert fetch({"source": "nyt", "section": "world"}, KEYS)["status_code"] == 200
    seen = api.last
    assert seen.path == "/svc/news/v3/content/nyt/world.json"
    assert seen.query == {"api-key": KEY}


def test_section_names_with_spaces_and_dots_are_encoded(api, fetch, testdata):
    api.route("*", testdata("all_all.json"))
    assert fetch({"section": "Business Day"}, KEYS)["status_code"] == 200
    assert api.last.target.startswith("/svc/news/v3/content/all/business%20day.json?")
    assert fetch({"section": "u.s."}, KEYS)["status_code"] == 200
    assert api.last.path == "/svc/news/v3/content/all/u.s..json"


@pytest.mark.parametrize(
    "params",
    [
        {"source": "bbc"},
        {"source": ""},
        {"section": ""},
        {"section": "../../topstories/v2/home"},
        {"section": "world?api-key=other"},
        {"section": "x" * 65},
    ],
)
def test_bad_params_are_400_without_a_request(api, fetch, params):
    r = fetch(params, KEYS)
    assert r["status_code"] == 400
    assert api.requests == []


def test_missing_key_is_401(api, fetch):
    assert fetch({}, {}) == {"status_code": 401, "result": "missing key api-key"}
    assert api.requests == []


@pytest.mark.parametrize("status", [401, 404, 500])
def test_upstream_errors_keep_their_status(api, fetch, status):
    api.route("*", {"fault": {"faultstring": "nope for %s" % KEY}}, status=status)
    r = fetch({}, KEYS)
    assert r["status_code"] == status
    assert r["result"].startswith("NYT answered %d" % status)
    assert KEY not in r["result"]


def test_429_with_retry_after(api, fetch):
    api.route("*", "", status=429, headers={"Retry-After": "60"})
    r = fetch({}, KEYS)
    assert (r["status_code"], r["retry_after"]) == (429, 60)


def test_bad_json_is_502(api, fetch):
    api.route("*", "<html>maintenance</html>")
    assert fetch({}, KEYS) == {"status_code": 502, "result": "NYT answered invalid JSON"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("NYT_BASE_URL", dead_url)
    r = fetch({}, KEYS)
    assert r["status_code"] == 502
    assert KEY not in r["result"]


def test_last_modified_round_trip(api, fetch, testdata):
    stamp = "Fri, 14 Mar 2025 14:40:02 GMT"
    api.route("/svc/news/v3/content/all/all.json", testdata("all_all.json"), last_modified=stamp)
    first = fetch({}, KEYS)
    assert first["state"] == {"last_modified": stamp}
    second = fetch({}, KEYS, first["state"])
    assert api.last.headers["if-modified-since"] == stamp
    assert second == {"status_code": 304, "result": [], "state": first["state"]}
