"""crypto-prices against a local server serving recorded CoinGecko simple/price answers."""
import pytest

PATH = "/api/v3/simple/price"


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("COINGECKO_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    assert metadata["name"] == "crypto-prices"
    assert metadata["id_field"] == "coin"
    assert metadata["keys"] == []
    assert metadata["params"]["ids"]["default"] == "bitcoin,ethereum"
    assert metadata["params"]["vs"]["default"] == "usd"
    assert metadata["rate_limit"] == {"per_minute": 10}


def test_one_item_per_coin(api, fetch, testdata):
    api.route(PATH, testdata("simple_price.json"))
    r = fetch({})
    assert r == {
        "status_code": 200,
        "result": [
            {"coin": "bitcoin", "usd": 83512.17, "last_updated_at": 1741961234},
            {"coin": "ethereum", "usd": 1912.46, "last_updated_at": 1741961241},
        ],
        "complete": True,
    }
    assert api.last.query == {"ids": "bitcoin,ethereum", "vs_currencies": "usd", "include_last_updated_at": "true"}
    assert len(api.requests) == 1


def test_several_currencies_and_an_unknown_coin(api, fetch, testdata):
    api.route(PATH, testdata("simple_price_multi.json"))
    r = fetch({"ids": "Bitcoin, solana,not-a-coin,bitcoin", "vs": "usd,EUR"})
    assert api.last.query["ids"] == "bitcoin,solana,not-a-coin"
    assert api.last.query["vs_currencies"] == "usd,eur"
    # CoinGecko leaves out ids it does not know.
    assert [i["coin"] for i in r["result"]] == ["bitcoin", "solana"]
    assert r["result"][1] == {"coin": "solana", "usd": 127.35, "eur": 117.18, "last_updated_at": 1741961229}


@pytest.mark.parametrize(
    "params",
    [{"ids": ""}, {"ids": "bitcoin,,eth"}, {"ids": "bit coin"}, {"ids": "-x"}, {"ids": "a&b=c"},
     {"ids": ",".join("c%d" % i for i in range(51))}, {"vs": ""}, {"vs": "us1"}, {"vs": "usd;eur"}],
)
def test_bad_params_are_400(api, fetch, params):
    r = fetch(params)
    assert r["status_code"] == 400
    assert api.requests == []


def test_429_with_retry_after(api, fetch, testdata):
    api.route(PATH, testdata("rate_limited.json"), status=429, headers={"Retry-After": "61"})
    r = fetch({})
    assert r["status_code"] == 429
    assert r["retry_after"] == 61
    assert "Rate Limit" in r["result"]


def test_429_without_retry_after(api, fetch, testdata):
    api.route(PATH, testdata("rate_limited.json"), status=429)
    r = fetch({})
    assert r["status_code"] == 429
    assert "retry_after" not in r


@pytest.mark.parametrize("status", [404, 500, 502])
def test_upstream_errors_keep_their_status(api, fetch, status):
    api.route(PATH, "", status=status)
    assert fetch({}) == {"status_code": status, "result": "CoinGecko answered %d" % status}


def test_bad_json_and_wrong_shape_are_502(api, fetch):
    api.route(PATH, "not json")
    assert fetch({}) == {"status_code": 502, "result": "CoinGecko answered invalid JSON"}
    api.route(PATH, [1, 2])
    assert fetch({}) == {"status_code": 502, "result": "CoinGecko response is not an object"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("COINGECKO_BASE_URL", dead_url)
    assert fetch({})["status_code"] == 502


def test_etag_round_trip(api, fetch, testdata):
    api.route(PATH, testdata("simple_price.json"), etag='W/"abc"')
    first = fetch({})
    assert first["state"] == {"etag": 'W/"abc"'}
    assert fetch({}, state=first["state"]) == {"status_code": 304, "result": [], "state": first["state"]}
