"""twitter-status against a local server serving recorded X API v2 answers."""
import time

import pytest

TOKEN = "AAAAAAAAAAAAAAAAAAAAAtest%2Fbearer%3Dtoken"
KEYS = {"bearer-token": TOKEN}
POST = "1460323737035677698"
PATH = "/2/tweets/" + POST


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("X_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "twitter-status"
    assert metadata["id_field"] == "id"
    assert metadata["keys"] == ["bearer-token"]
    assert metadata["poll_interval"] == 60
    id_param = {"required": True, "type": "number", "description": metadata["params"]["id"]["description"]}
    assert metadata["params"] == {"id": id_param}


def test_fetch_the_post(api, fetch, testdata):
    api.route(PATH, testdata("tweet.json"))
    r = fetch({"id": POST}, KEYS)
    assert r["status_code"] == 200
    [post] = r["result"]
    assert post["id"] == POST
    assert post["public_metrics"]["like_count"] == 1131
    assert post["author_id"] == "2244994945"
    assert r["complete"] is True
    assert api.last.query == {"tweet.fields": "public_metrics,created_at,author_id"}


def test_token_goes_in_the_authorization_header_only(api, fetch, testdata):
    api.route(PATH, testdata("tweet.json"))
    fetch({"id": POST}, KEYS)
    seen = api.last
    assert seen.headers["authorization"] == "Bearer " + TOKEN
    assert TOKEN not in seen.target


@pytest.mark.parametrize("post_id", ["", "abc", "12a", "1/../2", "-1", "１２３", "1" * 20, " "])
def test_id_must_be_digits(api, fetch, post_id):
    r = fetch({"id": post_id}, KEYS)
    assert r["status_code"] == 400
    assert api.requests == []


def test_missing_id_is_400(api, fetch):
    assert fetch({}, KEYS)["status_code"] == 400


def test_missing_token_is_401(api, fetch):
    assert fetch({"id": POST}, {}) == {"status_code": 401, "result": "missing key bearer-token"}
    assert api.requests == []


def test_not_found_errors_map_to_404(api, fetch, testdata):
    api.route("/2/tweets/1", testdata("not_found.json"))  # X answers 200 with `errors`
    r = fetch({"id": "1"}, KEYS)
    assert r == {"status_code": 404, "result": "X: Could not find tweet with id: [1]."}


def test_protected_post_maps_to_403(api, fetch):
    body = {"errors": [{"detail": "Sorry, you are not authorized to see the Tweet with id: [5].",
                        "type": "https://api.twitter.com/2/problems/not-authorized-for-resource"}]}
    api.route("/2/tweets/5", body)
    assert fetch({"id": "5"}, KEYS)["status_code"] == 403


def test_unknown_problem_is_502(api, fetch):
    api.route(PATH, {"errors": [{"title": "Something new", "type": "https://api.x.com/2/problems/new"}]})
    assert fetch({"id": POST}, KEYS) == {"status_code": 502, "result": "X: Something new"}


def test_no_data_is_502(api, fetch):
    api.route(PATH, {"meta": {}})
    assert fetch({"id": POST}, KEYS)["status_code"] == 502


def test_bad_token_is_401_without_the_token(api, fetch, testdata):
    api.route(PATH, testdata("unauthorized.json"), status=401)
    r = fetch({"id": POST}, KEYS)
    assert r == {"status_code": 401, "result": "X answered 401: Unauthorized"}


def test_429_with_retry_after(api, fetch, testdata):
    api.route(PATH, testdata("too_many_requests.json"), status=429, headers={"Retry-After": "30"})
    r = fetch({"id": POST}, KEYS)
    assert (r["status_code"], r["retry_after"]) == (429, 30)


def test_429_with_rate_limit_reset(api, fetch, testdata):
    reset = int(time.time()) + 300
    headers = {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}
    api.route(PATH, testdata("too_many_requests.json"), status=429, headers=headers)
    r = fetch({"id": POST}, KEYS)
    assert r["status_code"] == 429
    assert 295 <= r["retry_after"] <= 300


def test_503_with_http_date_retry_after(api, fetch):
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    api.route(PATH, "", status=503, headers={"Retry-After": later})
    r = fetch({"id": POST}, KEYS)
    assert r["status_code"] == 503
    assert 115 <= r["retry_after"] <= 121


def test_500_and_bad_json(api, fetch):
    api.route(PATH, "oops", status=500)
    assert fetch({"id": POST}, KEYS) == {"status_code": 500, "result": "X answered 500"}
    api.route(PATH, "oops")
    assert fetch({"id": POST}, KEYS) == {"status_code": 502, "result": "X answered invalid JSON"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("X_BASE_URL", dead_url)
    r = fetch({"id": POST}, KEYS)
    assert r["status_code"] == 502
    assert TOKEN not in r["result"]


def test_token_that_cannot_be_a_header_is_refused_quietly(api, fetch):
    r = fetch({"id": POST}, {"bearer-token": "secret\r\nX-Evil: 1"})
    assert r["status_code"] == 401
    assert "secret" not in r["result"]
    assert api.requests == []


def test_error_text_echoing_the_token_is_scrubbed(api, fetch):
    api.route(PATH, {"detail": "token %s is revoked" % TOKEN}, status=403)
    r = fetch({"id": POST}, KEYS)
    assert r["status_code"] == 403
    assert TOKEN not in r["result"]
