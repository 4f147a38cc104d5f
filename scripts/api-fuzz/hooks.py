"""Schemathesis hooks of scripts/api-fuzz.sh.

Long polls: `GET /v1/jobs/{id}/wait?timeout_ms=` and the `wait_ms` of a
claim (also inside `claim_next`) may hold a request up to 5 minutes, and
the fuzzer's jobs mostly never finish (it runs no worker), so a valid wait
is capped at 50 ms before the request is sent. Only values the server
would accept are touched: an out-of-range or mistyped one is left as
generated, so the negative checks still see the server refuse it.

Backoff: see `_order_backoff`. Batches: see `_distinct_ids`. Keys and
worker names: see `_fit_bytes`. A key's line: see `_key_line`.

Executors: the fuzzer never gives a queue an executor. A `command`
executor runs a program on this machine and a `webhook` one calls a URL,
and the fuzzer would make up both; `executor` (any JSON in the document)
is sent as `null` (pull workers, the default) instead. The executor's
validation has its own tests (orderly-core, orderly-server).
"""

from __future__ import annotations

from typing import Any

import schemathesis

CAP_MS = 50
MAX_WAIT_MS = 300_000


def _capped(value: Any) -> Any:
    # A whole float (`250000.0`) is a valid wait too.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and float(value).is_integer() and CAP_MS < value <= MAX_WAIT_MS:
        return CAP_MS
    if isinstance(value, str) and value.isdigit() and CAP_MS < int(value) <= MAX_WAIT_MS:
        return str(CAP_MS)
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    if case.path.endswith("/wait"):
        if case.query is None:
            case.query = {}
        if isinstance(case.query, dict):
            # Absent, the server waits its default of 30 s.
            case.query["timeout_ms"] = _capped(case.query.get("timeout_ms", MAX_WAIT_MS))
    if case.path.endswith("/jobs") and case.method.upper() == "GET" and isinstance(case.query, dict):
        _key_line(case.query)
    body = case.body
    if isinstance(body, dict):
        if "wait_ms" in body:
            body["wait_ms"] = _capped(body["wait_ms"])
        nested = body.get("claim_next")
        if isinstance(nested, dict) and "wait_ms" in nested:
            nested["wait_ms"] = _capped(nested["wait_ms"])
    if isinstance(body, dict) and case.path.endswith("/jobs/batch") and isinstance(body.get("jobs"), list):
        _distinct_ids(body["jobs"])
        for job in body["jobs"]:
            _fit_bytes(job, "key")
    if isinstance(body, dict):
        _fit_bytes(body, "key")
        _fit_bytes(body, "worker")
        _fit_bytes(body.get("claim_next"), "worker")
        reports = body.get("reports")
        if isinstance(reports, list):
            for item in reports:
                if isinstance(item, dict):
                    _fit_bytes(item.get("claim_next"), "worker")
    if isinstance(body, dict) and case.method.upper() == "PUT":
        if "executor" in body:
            body["executor"] = None
        backoff = body.get("backoff")
        if isinstance(backoff, dict):
            _order_backoff(backoff)


def _fit_bytes(obj: Any, field: str, limit: int = 200) -> None:
    """A key and a worker name are at most 200 *bytes* of UTF-8; JSON
    Schema's `maxLength` counts characters. A string of at most 200
    characters but more bytes is cut to fit, so a case that should be
    accepted is (a longer one is left for the negative checks)."""
    value = obj.get(field) if isinstance(obj, dict) else None
    if isinstance(value, str) and len(value) <= limit < len(value.encode("utf-8", "surrogatepass")):
        while len(value.encode("utf-8", "surrogatepass")) > limit:
            value = value[:-1]
        obj[field] = value


def _key_line(query: dict[str, Any]) -> None:
    """`key=` lists a key's line, which holds only unfinished jobs: with a
    finished `state` the server refuses it (`400`), a rule across
    parameters JSON Schema cannot say, so such a `state` is dropped and a
    case that should be accepted is. The key is fitted to 200 bytes."""
    _fit_bytes(query, "key")
    if "key" in query and query.get("state") in ("succeeded", "failed", "cancelled"):
        del query["state"]


def _distinct_ids(jobs: list[Any]) -> None:
    """The ids of one batch must differ, a rule across items that JSON
    Schema cannot say (`uniqueItems` compares whole items): a repeated id is
    dropped (an id is optional), so a case that should be accepted is."""
    seen: set[str] = set()
    for job in jobs:
        if isinstance(job, dict) and isinstance(job.get("id"), str):
            if job["id"] in seen:
                del job["id"]
            else:
                seen.add(job["id"])


def _order_backoff(backoff: dict[str, Any]) -> None:
    """A backoff's `max_ms` must not be below its `initial_ms`, a rule
    across fields that JSON Schema cannot say: two valid numbers in the
    wrong order are swapped, so a case that should be accepted is."""
    lo, hi = backoff.get("initial_ms"), backoff.get("max_ms")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) and hi < lo:
        backoff["initial_ms"], backoff["max_ms"] = hi, lo
