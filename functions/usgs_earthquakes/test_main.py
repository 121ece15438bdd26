"""usgs-earthquakes against a local server serving a recorded GeoJSON summary feed."""
import pytest

PATH = "/earthquakes/feed/v1.0/summary/all_hour.geojson"


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("USGS_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    # The Rust end-to-end tests depend on these.
    assert metadata["name"] == "usgs-earthquakes"
    assert metadata["id_field"] == "id"
    assert metadata["keys"] == []
    assert metadata["params"]["feed"]["default"] == "all_hour"
    assert not metadata["params"]["feed"].get("required")


def test_fetch_features(api, fetch, testdata):
    api.route(PATH, testdata("all_hour.json"))
    r = fetch({})
    assert r["status_code"] == 200
    assert r["complete"] is True
    assert [f["id"] for f in r["result"]] == ["nc75142346", "hv74612077"]
    assert r["result"][0]["properties"]["mag"] == 1.42
    assert "state" not in r
    assert len(api.requests) == 1


def test_feed_param_picks_the_file(api, fetch, testdata):
    api.route("/earthquakes/feed/v1.0/summary/2.5_day.geojson", testdata("all_hour.json"))
    assert fetch({"feed": "2.5_day"})["status_code"] == 200
    assert api.last.path.endswith("/2.5_day.geojson")


@pytest.mark.parametrize("feed", ["", "all", "huge_hour", "../all_hour", "all_hour.geojson"])
def test_unknown_feed_is_400(api, fetch, feed):
    r = fetch({"feed": feed})
    assert r["status_code"] == 400
    assert api.requests == []


@pytest.mark.parametrize("status", [404, 500])
def test_upstream_errors_keep_their_status(api, fetch, status):
    api.route(PATH, "", status=status)
    assert fetch({}) == {"status_code": status, "result": "USGS answered %d" % status}


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after(api, fetch, status):
    api.route(PATH, "", status=status, headers={"Retry-After": "90"})
    assert fetch({}) == {"status_code": status, "result": "USGS answered %d" % status, "retry_after": 90}


def test_bad_json_and_wrong_shape_are_502(api, fetch):
    api.route(PATH, "<html>")
    assert fetch({})["status_code"] == 502
    api.route(PATH, {"type": "FeatureCollection"})
    assert fetch({}) == {"status_code": 502, "result": "USGS response has no features list"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("USGS_BASE_URL", dead_url)
    assert fetch({})["status_code"] == 502


def test_conditional_requests(api, fetch, testdata):
    stamp = "Fri, 14 Mar 2025 14:50:00 GMT"
    api.route(PATH, testdata("all_hour.json"), etag='"5f3a"', last_modified=stamp)
    first = fetch({})
    assert first["state"] == {"etag": '"5f3a"', "last_modified": stamp}
    second = fetch({}, state=first["state"])
    assert api.last.headers["if-none-match"] == '"5f3a"'
    assert api.last.headers["if-modified-since"] == stamp
    # Unchanged: no items and not `complete`, which would remove every quake.
    assert second == {"status_code": 304, "result": [], "state": first["state"]}


def test_a_state_from_elsewhere_is_ignored(api, fetch, testdata):
    api.route(PATH, testdata("all_hour.json"))
    assert fetch({}, state="opaque")["status_code"] == 200
    assert "if-none-match" not in api.last.headers
