"""open-meteo-current against a local server serving a recorded forecast answer."""
import pytest

PATH = "/v1/forecast"
BERLIN = {"latitude": "52.52", "longitude": "13.41"}


@pytest.fixture
def api(upstream, monkeypatch):
    monkeypatch.setenv("OPEN_METEO_BASE_URL", upstream.url)
    return upstream


def test_metadata(metadata):
    # The Rust end-to-end tests depend on these.
    assert metadata["name"] == "open-meteo-current"
    assert metadata["id_field"] == "location"
    assert metadata["params"]["latitude"] == {
        "required": True,
        "type": "number",
        "description": "decimal degrees, -90 to 90",
    }
    assert metadata["params"]["longitude"]["required"] is True
    assert "default" not in metadata["params"]["latitude"]


def test_current_weather_is_one_item(api, fetch, testdata):
    api.route(PATH, testdata("forecast_current.json"))
    r = fetch(BERLIN)
    assert r["status_code"] == 200
    assert r["complete"] is True
    [item] = r["result"]
    assert item["location"] == "52.52,13.41"
    assert item["temperature_2m"] == 8.4
    assert item["units"]["temperature_2m"] == "\u00b0C"
    seen = api.last
    assert seen.query["latitude"] == "52.52"
    assert seen.query["longitude"] == "13.41"
    assert seen.query["current"] == "temperature_2m,relative_humidity_2m,wind_speed_10m,weather_code"
    assert len(api.requests) == 1


def test_location_is_the_params_as_given(api, fetch, testdata):
    api.route(PATH, testdata("forecast_current.json"))
    [item] = fetch({"latitude": "1", "longitude": "-2.50"})["result"]
    assert item["location"] == "1,-2.50"


@pytest.mark.parametrize(
    "params",
    [{}, {"latitude": "52.52"}, {"latitude": "91", "longitude": "0"}, {"latitude": "0", "longitude": "-181"},
     {"latitude": "north", "longitude": "0"}],
)
def test_bad_coordinates_are_400(api, fetch, params):
    assert fetch(params)["status_code"] == 400
    assert api.requests == []


def test_upstream_400_is_kept(api, fetch, testdata):
    api.route(PATH, testdata("error_400.json"), status=400)
    assert fetch(BERLIN) == {"status_code": 400, "result": "Open-Meteo answered 400"}


def test_429_with_retry_after(api, fetch):
    api.route(PATH, "", status=429, headers={"Retry-After": "60"})
    assert fetch(BERLIN) == {"status_code": 429, "result": "Open-Meteo answered 429", "retry_after": 60}


def test_500_bad_json_and_wrong_shape(api, fetch):
    api.route(PATH, "", status=500)
    assert fetch(BERLIN)["status_code"] == 500
    api.route(PATH, "nope")
    assert fetch(BERLIN)["status_code"] == 502
    api.route(PATH, {"hourly": {}})
    assert fetch(BERLIN) == {"status_code": 502, "result": "Open-Meteo response has no current block"}


def test_unreachable_is_502(fetch, monkeypatch, dead_url):
    monkeypatch.setenv("OPEN_METEO_BASE_URL", dead_url)
    assert fetch(BERLIN)["status_code"] == 502
