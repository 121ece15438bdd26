"""USGS earthquakes: the GeoJSON summary feeds, one item per earthquake.

Upstream: https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php (no key).
USGS_BASE_URL overrides the upstream host (tests point it at a local server).
"""
import json
import os
import time
import urllib.error
import urllib.request
from email.utils import mktime_tz, parsedate_tz

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
            "required": False,
            "default": "all_hour",
            "description": "magnitude_period, e.g. all_hour, 2.5_day, significant_week",
        }
    },
}


def base_url():
    return os.environ.get("USGS_BASE_URL", "https://earthquake.usgs.gov").rstrip("/")


def retry_after(headers):
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = (headers.get("Retry-After") or "").strip() if headers else ""
    if value.isdigit():
        return int(value)
    date = parsedate_tz(value) if value else None
    return max(0, round(mktime_tz(date) - time.time())) if date else None


def fetch(params, state=None):
    feed = params.get("feed", "all_hour")
    if feed not in FEEDS:
        return {"status_code": 400, "result": "unknown feed %r; use one of %s" % (feed, ", ".join(sorted(FEEDS)))}
    url = "%s/earthquakes/feed/v1.0/summary/%s.geojson" % (base_url(), feed)
    # The feeds are static files with ETag and Last-Modified: ask only for a changed one.
    headers = {}
    if isinstance(state, dict):
        if isinstance(state.get("etag"), str):
            headers["If-None-Match"] = state["etag"]
        if isinstance(state.get("last_modified"), str):
            headers["If-Modified-Since"] = state["last_modified"]
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            body = json.load(resp)
            validators = {
                field: resp.headers[header]
                for field, header in (("etag", "ETag"), ("last_modified", "Last-Modified"))
                if resp.headers.get(header)
            }
    except urllib.error.HTTPError as e:
        if e.code == 304 and isinstance(state, dict):
            # Unchanged: no items, and not `complete` (that would remove every quake).
            return {"status_code": 304, "result": [], "state": state}
        answer = {"status_code": e.code, "result": "USGS answered %d" % e.code}
        wait = retry_after(e.headers) if e.code in (429, 503) else None
        if wait is not None:
            answer["retry_after"] = wait
        return answer
    except (urllib.error.URLError, OSError, ValueError) as e:
        return {"status_code": 502, "result": "USGS unreachable or invalid: %s" % e}
    features = body.get("features") if isinstance(body, dict) else None
    if not isinstance(features, list):
        return {"status_code": 502, "result": "USGS response has no features list"}
    # The feed is the whole collection for its period, so a missing id means "gone".
    answer = {"status_code": 200, "result": features, "complete": True}
    if validators:
        answer["state"] = validators
    return answer


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        return fetch(event.get("params") or {}, event.get("state"))
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
