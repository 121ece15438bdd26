"""USGS earthquakes: the GeoJSON summary feeds, one item per earthquake.

Upstream: https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php (no key).
USGS_BASE_URL overrides the upstream host (tests point it at a local server).
"""
import json
import os
import urllib.error
import urllib.request

FEEDS = {
    f"{level}_{period}"
    for level in ("significant", "4.5", "2.5", "1.0", "all")
    for period in ("hour", "day", "week", "month")
}

METADATA = {
    "name": "usgs-earthquakes",
    "description": "Earthquakes reported by the USGS, updated every minute",
    "id_field": "id",
    "api_url": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/",
    "doc_url": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php",
    "keys": [],
    "poll_interval": 60,
    "params": {
        "feed": {
            "default": "all_hour",
            "description": "magnitude_period, e.g. all_hour, 2.5_day, significant_week",
        }
    },
}


def base_url():
    return os.environ.get("USGS_BASE_URL", "https://earthquake.usgs.gov").rstrip("/")


def fetch(params):
    feed = params.get("feed", "all_hour")
    if feed not in FEEDS:
        return {"status_code": 400, "result": "unknown feed %r; use one of %s" % (feed, ", ".join(sorted(FEEDS)))}
    url = "%s/earthquakes/feed/v1.0/summary/%s.geojson" % (base_url(), feed)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        return {"status_code": e.code, "result": "USGS answered %d" % e.code}
    except (urllib.error.URLError, OSError, ValueError) as e:
        return {"status_code": 502, "result": "USGS unreachable or invalid: %s" % e}
    features = body.get("features") if isinstance(body, dict) else None
    if not isinstance(features, list):
        return {"status_code": 502, "result": "USGS response has no features list"}
    # The feed is the whole collection for its period, so a missing id means "gone".
    return {"status_code": 200, "result": features, "complete": True}


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        return fetch(event.get("params") or {})
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
