"""X (Twitter) post: one post and its public metrics, a single item that updates in place.

Upstream: https://docs.x.com/x-api/posts/get-post-by-id (GET /2/tweets/{id}),
key `bearer-token` (an app-only OAuth 2.0 Bearer token, sent in the Authorization header).
X_BASE_URL overrides the upstream host (tests point it at a local server).
"""
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import mktime_tz, parsedate_tz

FIELDS = "public_metrics,created_at,author_id"

METADATA = {
    "name": "twitter-status",
    "description": "One X (Twitter) post with its like, repost, reply and quote counts",
    "id_field": "id",
    "api_url": "https://api.x.com/2/tweets/",
    "doc_url": "https://docs.x.com/x-api/posts/get-post-by-id",
    "keys": ["bearer-token"],
    "poll_interval": 60,
    # Variables this fetcher reads; restream passes no others (besides PATH, LANG, ...).
    "env": ["X_BASE_URL"],
    "params": {
        "id": {"required": True, "type": "number", "description": "the post id: digits, as in https://x.com/<user>/status/<id>"},
    },
}

NAME = "X"
TIMEOUT = 10
USER_AGENT = "restream-fetcher/1"

# Problem types of the X API v2 that mean the post cannot be shown, as HTTP statuses.
PROBLEMS = {
    "resource-not-found": 404,
    "not-authorized-for-resource": 403,
    "resource-unavailable": 403,
    "invalid-request": 400,
}


def base_url():
    return os.environ.get("X_BASE_URL", "https://api.x.com").rstrip("/")


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


def rate_limit_reset(headers):
    """Seconds until x-rate-limit-reset (epoch seconds), X's answer to 429 besides Retry-After."""
    value = (headers.get("x-rate-limit-reset") or "").strip() if headers else ""
    return max(0, int(value) - int(time.time())) if value.isdigit() else None


def fetch(params, keys, state):
    post_id = str(params.get("id", "")).strip()
    if not post_id.isascii() or not post_id.isdigit() or len(post_id) > 19:
        raise Answer(400, "id must be the digits of a post id")
    token = key(keys, "bearer-token")
    url = "%s/2/tweets/%s?%s" % (base_url(), post_id, urllib.parse.urlencode({"tweet.fields": FIELDS}, safe=","))
    try:
        body, new_state = get_json(url, headers={"Authorization": "Bearer " + token}, state=state, secrets=[token])
    except Answer as answer:
        if answer.response["status_code"] == 429 and "retry_after" not in answer.response:
            wait = rate_limit_reset(answer.headers)
            if wait is not None:
                answer.response["retry_after"] = wait
        raise
    if not isinstance(body, dict):
        raise Answer(502, "X response is not an object")
    data = body.get("data")
    if isinstance(data, dict) and data.get("id"):
        response = {"status_code": 200, "result": [data], "complete": True}
        if new_state:
            response["state"] = new_state
        return response
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        problem = str(errors[0].get("type", "")).rsplit("/", 1)[-1]
        text = errors[0].get("detail") or errors[0].get("title") or problem
        raise Answer(PROBLEMS.get(problem, 502), scrub("X: %s" % text, [token]))
    raise Answer(502, "X response has no data")


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    if event.get("call") == "fetch":
        try:
            return fetch(event.get("params") or {}, event.get("keys") or {}, event.get("state"))
        except Answer as answer:
            return answer.response
    return {"status_code": 400, "result": "unknown call %r" % event.get("call")}
