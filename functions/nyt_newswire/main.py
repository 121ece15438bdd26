"""New York Times Times Newswire: the latest articles as they are published, one item per article.

Upstream: https://developer.nytimes.com/docs/timeswire-product/1/overview
(key `api-key`, sent in the query string as NYT requires).
NYT_BASE_URL overrides the upstream host (tests point it at a local server).

The original restream fetcher passed the section string as the api key; here the key comes
only from the `api-key` key and the section only from the `section` param.
"""
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import mktime_tz, parsedate_tz

SOURCES = {"all", "nyt", "inyt"}
# Section names come from /svc/news/v3/content/section-list.json and contain spaces and
# dots ("u.s.", "business day"), so they are checked loosely and percent-encoded.
SECTION_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789 .-&'")

METADATA = {
    "name": "nyt-newswire",
    "description": "New York Times articles as they are published (Times Newswire)",
    "id_field": "uri",
    "api_url": "https://api.nytimes.com/svc/news/v3/content/",
    "doc_url": "https://developer.nytimes.com/docs/timeswire-product/1/overview",
    "keys": ["api-key"],
    # 480 polls a day: under NYT's 500 a day for one key.
    "poll_interval": 180,
    # Variables this fetcher reads; restream passes no others (besides PATH, LANG, ...).
    "env": ["NYT_BASE_URL"],
    "params": {
        "source": {"required": False, "default": "all", "description": "all, nyt or inyt"},
        "section": {
            "required": False,
            "default": "all",
            "description": "all, or a section from section-list.json, e.g. world, u.s., business day",
        },
    },
    # NYT's documented limits per key: 500 requests a day and 5 a minute.
    "rate_limit": {"per_minute": 5, "per_day": 500},
}

NAME = "NYT"
TIMEOUT = 10
USER_AGENT = "restream-fetcher/1"


def base_url():
    return os.environ.get("NYT_BASE_URL", "https://api.nytimes.com").rstrip("/")


# --- upstream HTTP: the same block in every fetcher (each folder deploys on its own) ---


class Answer(Exception):
    """A finished non-200 fetch response, raised from anywhere inside a fetch."""

    def __init__(self, status_code, result, **extra):
        super().__init__(result)
        self.response = dict(status_code=status_code, result=result, **extra)
        self.headers = None  # the upstream error's headers, when there was one


def key(keys, name):
    """The value of key `name`; a 401 answer when it is missing or could not be sent safely."""
    value = keys.get(name) if isinstance(keys, dict) else None
    if not isinstance(value, str) or not value:
        raise Answer(401, "missing key %s" % name)
    if not all(33 <= ord(c) <= 126 for c in value):
        raise Answer(401, "key %s has characters that cannot be sent" % name)
    return value


def scrub(text, secrets):
    """`text` with every secret (raw or percent-encoded) replaced, then shortened."""
    text = str(text)
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, "***")
    return text[:300]


def retry_after(headers):
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = (headers.get("Retry-After") or "").strip() if headers else ""
    if value.isdigit():
        return int(value)
    date = parsedate_tz(value) if value else None
    return max(0, round(mktime_tz(date) - time.time())) if date else None


def upstream_message(raw):
    """A short human text from an upstream error body, when it has one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for path in (("fault", "faultstring"), ("detail",), ("title",), ("message",),
                 ("error",), ("status", "error_message"), ("errors",)):
        value = body
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list) and value:
            value = value[0]
            if isinstance(value, dict):
                value = value.get("message") or value.get("detail") or value.get("title")
        if isinstance(value, str) and value:
            return value
    return ""


def get_json(url, headers=None, state=None, secrets=()):
    """One GET. Returns (body, state); raises Answer for anything but a 2xx with JSON.

    `state` holds the ETag / Last-Modified of the previous answer; they are sent back as
    If-None-Match / If-Modified-Since, and a 304 becomes an empty answer keeping the state.
    """
    headers = dict(headers or {})
    headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
    if isinstance(state, dict):
        if isinstance(state.get("etag"), str):
            headers["If-None-Match"] = state["etag"]
        if isinstance(state.get("last_modified"), str):
            headers["If-Modified-Since"] = state["last_modified"]
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            raw = resp.read()
            validators = {
                field: resp.headers[header]
                for field, header in (("etag", "ETag"), ("last_modified", "Last-Modified"))
                if resp.headers.get(header)
            }
    except urllib.error.HTTPError as e:
        if e.code == 304 and isinstance(state, dict):
            raise Answer(304, [], state=state) from None
        try:
            detail = upstream_message(e.read(4096))
        except (OSError, http.client.HTTPException):
            detail = ""
        status = e.code if 400 <= e.code <= 599 else 502
        text = "%s answered %d%s" % (NAME, e.code, ": " + detail if detail else "")
        extra = {}
        wait = retry_after(e.headers) if e.code in (429, 503) else None
        if wait is not None:
            extra["retry_after"] = wait
        answer = Answer(status, scrub(text, secrets), **extra)
        answer.headers = e.headers
        raise answer from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise Answer(502, scrub("%s unreachable: %s" % (NAME, reason), secrets)) from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise Answer(502, "%s answered invalid JSON" % NAME) from None
    return body, validators or None


def unique(items, id_field):
    """The objects of `items` that have an id, first occurrence of each id kept."""
    seen = set()
    out = []
    for item in items:
        if isinstance(item, dict) and item.get(id_field) not in (None, "") and item[id_field] not in seen:
            seen.add(item[id_field])
            out.append(item)
    return out


# --- the fetcher ---


def fetch(params, keys, state):
    source = str(params.get("source", "all"))
    if source not in SOURCES:
        raise Answer(400, "unknown source %r; use one of %s" % (source, ", ".join(sorted(SOURCES))))
    section = str(params.get("section", "all")).strip().lower()
    if not section or len(section) > 64 or not set(section) <= SECTION_CHARS:
        raise Answer(400, "section must be all or a section name such as world, u.s. or business day")
    api_key = key(keys, "api-key")
    url = "%s/svc/news/v3/content/%s/%s.json?%s" % (
        base_url(),
        source,
        urllib.parse.quote(section, safe=""),
        urllib.parse.urlencode({"api-key": api_key}),
    )
    body, new_state = get_json(url, state=state, secrets=[api_key])
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise Answer(502, "NYT response has no results list")
    # Newest first and paged: an article that scrolled off the page was not removed, so the
    # answer is not `complete`.
    response = {"status_code": 200, "result": unique(results, "uri")}
    if new_state:
        response["state"] = new_state
    return response


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        try:
            return fetch(event.get("params") or {}, event.get("keys") or {}, event.get("state"))
        except Answer as answer:
            return answer.response
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
