"""Open-Meteo current weather for one location: a single item that updates in place.

Upstream: https://open-meteo.com/en/docs (no key).
OPEN_METEO_BASE_URL overrides the upstream host (tests point it at a local server).
"""
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import mktime_tz, parsedate_tz

METADATA = {
    "name": "open-meteo-current",
    "description": "Current temperature and wind at a latitude/longitude (Open-Meteo)",
    "id_field": "location",
    "api_url": "https://api.open-meteo.com/v1/forecast",
    "doc_url": "https://open-meteo.com/en/docs",
    "keys": [],
    "poll_interval": 300,
    # Variables this fetcher reads; restream passes no others (besides PATH, LANG, ...).
    "env": ["OPEN_METEO_BASE_URL"],
    "params": {
        "latitude": {"required": True, "type": "number", "description": "decimal degrees, -90 to 90"},
        "longitude": {"required": True, "type": "number", "description": "decimal degrees, -180 to 180"},
    },
    # Open-Meteo's free non-commercial tier: 600 calls a minute, 5,000 an hour, 10,000 a day.
    "rate_limit": {"per_minute": 600, "per_hour": 5000, "per_day": 10000},
}

CURRENT = "temperature_2m,relative_humidity_2m,wind_speed_10m,weather_code"


def retry_after(headers):
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = (headers.get("Retry-After") or "").strip() if headers else ""
    if value.isdigit():
        return int(value)
    date = parsedate_tz(value) if value else None
    return max(0, round(mktime_tz(date) - time.time())) if date else None


def coordinate(params, name, limit):
    try:
        value = float(params[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if -limit <= value <= limit else None


def fetch(params):
    lat = coordinate(params, "latitude", 90)
    lon = coordinate(params, "longitude", 180)
    if lat is None or lon is None:
        return {"status_code": 400, "result": "latitude must be in [-90, 90] and longitude in [-180, 180]"}
    base = os.environ.get("OPEN_METEO_BASE_URL", "https://api.open-meteo.com").rstrip("/")
    query = urllib.parse.urlencode({"latitude": lat, "longitude": lon, "current": CURRENT})
    try:
        with urllib.request.urlopen("%s/v1/forecast?%s" % (base, query), timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        answer = {"status_code": e.code, "result": "Open-Meteo answered %d" % e.code}
        wait = retry_after(e.headers) if e.code in (429, 503) else None
        if wait is not None:
            answer["retry_after"] = wait
        return answer
    except (urllib.error.URLError, OSError, ValueError) as e:
        return {"status_code": 502, "result": "Open-Meteo unreachable or invalid: %s" % e}
    current = body.get("current") if isinstance(body, dict) else None
    if not isinstance(current, dict):
        return {"status_code": 502, "result": "Open-Meteo response has no current block"}
    item = dict(current)
    item["location"] = "%s,%s" % (params["latitude"], params["longitude"])
    item["units"] = body.get("current_units", {})
    return {"status_code": 200, "result": [item], "complete": True}


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        return fetch(event.get("params") or {})
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
