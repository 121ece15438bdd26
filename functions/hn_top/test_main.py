"""hn-top against a local server serving a recorded Algolia front-page answer."""
import pytest

PATH = "/api/v1/search"


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("HN_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "hn-top"
    assert metadata["id_field"] == "objectID"
    assert metadata["keys"] == []
    assert metadata["params"]["limit"]["default"] == "30"


def test_fetch_front_page_in_one_request(api, fetch, testdata):
    api.route(PATH, testdata("front_page.json"))
    r = fetch({})
    assert r["status_code"] == 200
    assert r["complete"] is True
    assert [s["objectID"] for s in r["result"]] == ["43360802", "43359977", "43243024"]
    assert r["result"][0]["points"] == 187
    assert all("_highlightResult" not in s for s in r["result"])
    assert len(api.requests) == 1
    assert api.last.query == {"tags": "front_page", "hitsPerPage": "30"}


@pytest.mark.parametrize("limit", ["1", "100", " 7 "])
def test_limit_is_hits_per_page(api, fetch, testdata, limit):
    api.route(PATH, testdata("front_page.json"))
    assert fetch({"limit": limit})["status_code"] == 200
    assert api.last.query["hitsPerPage"] == limit.strip()


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "", "1.5", "1e2"])
def test_bad_limit_is_400(api, fetch, limit):
    r = fetch({"limit": limit})
    assert r["status_code"] == 400
    assert "limit" in r["result"]
    assert api.requests == []


def test_not_found_is_404(api, fetch):
    api.route("/elsewhere", {})
    assert fetch({}) == {"status_code": 404, "result": "HN Algolia answered 404: no route"}


def test_429_with_retry_after(api, fetch):
    api.route(PATH, {"message": "Too many requests", "status": 429}, status=429, headers={"Retry-After": "3600"})
    r = fetch({})
    assert r == {"status_code": 429, "result": "HN Algolia answered 429: Too many requests", "retry_after": 3600}


def test_500_is_kept(api, fetch):
    api.route(PATH, "", status=500)
    assert fetch({})["status_code"] == 500


def test_bad_json_and_wrong_shape_are_502(api, fetch):
    api.route(PATH, "[")
    assert fetch({})["status_code"] == 502
    api.route(PATH, {"hits": "many"})
    assert fetch({}) == {"status_code": 502, "result": "HN Algolia response has no hits list"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("HN_BASE_URL", dead_url)
    r = fetch({})
    assert r["status_code"] == 502
    assert r["result"].startswith("HN Algolia unreachable")


def test_etag_round_trip(api, fetch, testdata):
    api.route(PATH, testdata("front_page.json"), etag='W/"fp-1"')
    first = fetch({})
    second = fetch({}, state=first["state"])
    assert api.last.headers["if-none-match"] == 'W/"fp-1"'
    # No items and not complete: an unchanged front page must not remove every story.
    assert second == {"status_code": 304, "result": [], "state": {"etag": 'W/"fp-1"'}}


def test_slow_upstream_times_out_as_502(api, fetch, fetcher, monkeypatch, testdata):
    monkeypatch.setattr(fetcher, "TIMEOUT", 0.2)
    api.route(PATH, testdata("front_page.json"), delay=1)
    r = fetch({})
    assert r["status_code"] == 502
    assert "timed out" in r["result"]
