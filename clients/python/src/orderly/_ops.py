"""The API's operations without I/O: each function builds a :class:`Call`
(method, path, query, body, whether it is safe to send again, how long the
server may hold it) with the parser of its answer. :class:`orderly.Client`
and :class:`orderly.AsyncClient` send the same calls, so they cannot drift.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from ._convert import Duration, Reader, ms
from .audit import Attempt, Start
from .models import (
    Backoff,
    ClaimNext,
    Heartbeat,
    Job,
    JobState,
    Lease,
    NewJob,
    Queue,
    ReportResult,
)

T = TypeVar("T")

DEFAULT_SERVER = "http://127.0.0.1:7771"
"""Where the client looks for the server without ``url`` and ``ORDERLY_SERVER``."""

MAX_WAIT_MS = 300_000
"""The server's longest long poll per call (``wait`` loops past it)."""


class _Unset:
    """The type of :data:`UNSET`."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = _Unset()
"""Marks an argument left out (where ``None`` means JSON ``null``)."""


@dataclass(frozen=True)
class Page:
    """One page of a job listing."""

    jobs: list[Job]
    next_after: int | None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request of the API and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, str | int] | None = None
    body: Any = UNSET
    idempotent: bool = False
    """Safe to send again after a connection error or a 5xx."""
    hold_ms: int = 0
    """How long the server may hold the request before answering (a long poll)."""
    raw_body: bytes | None = None
    """A body sent as it is, instead of ``body`` as JSON."""

    def content(self) -> bytes | None:
        """The body, or ``None`` without one."""
        if self.raw_body is not None:
            return self.raw_body
        if isinstance(self.body, _Unset):
            return None
        try:
            return json.dumps(self.body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise TypeError(f"{self.method} {self.path}: the body is not JSON-serialisable: {e}") from e


def seg(value: str) -> str:
    """``value`` as one path segment (``.`` and ``..`` too, which URLs would fold away)."""
    if not isinstance(value, str):
        raise TypeError(f"a queue name or job id must be a string, not {type(value).__name__}")
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def retry_delay(attempt: int, initial: float, cap: float = 5.0) -> float:
    """Pause before retry number ``attempt`` (1 for the first): exponential, full jitter."""
    return float(random.uniform(0.5, 1.0) * min(cap, initial * (2.0 ** (attempt - 1))))


def _jobs(obj: Any) -> list[Job]:
    return [Job.from_json(j) for j in Reader(obj, "answer").items("jobs")]


def _page(obj: Any) -> Page:
    r = Reader(obj, "job list")
    return Page(jobs=_jobs(obj), next_after=r.opt_integer("next_after"))


@dataclass(frozen=True)
class StartPage:
    """One page of a queue's start log."""

    starts: list[Start]
    next_after: int | None


def _start_page(obj: Any) -> StartPage:
    r = Reader(obj, "start log")
    return StartPage(
        starts=[Start.from_json(s) for s in r.items("starts")], next_after=r.opt_integer("next_after")
    )


def _attempts(obj: Any) -> list[Attempt]:
    return [Attempt.from_json(a) for a in Reader(obj, "attempts").items("attempts")]


def _queues(obj: Any) -> list[Queue]:
    return [Queue.from_json(q) for q in Reader(obj, "queue list").items("queues")]


def _leases(obj: Any) -> list[Lease]:
    return [Lease.from_json(x) for x in Reader(obj, "claim").items("leases")]


def enqueue(queue: str, job: NewJob) -> Call[Job]:
    return Call(
        "POST",
        f"/v1/queues/{seg(queue)}/jobs",
        Job.from_json,
        body=job.to_json(),
        idempotent=job.id is not None,
    )


def enqueue_many(queue: str, jobs: Sequence[NewJob]) -> Call[list[Job]]:
    return Call(
        "POST",
        f"/v1/queues/{seg(queue)}/jobs/batch",
        _jobs,
        body={"jobs": [j.to_json() for j in jobs]},
        idempotent=bool(jobs) and all(j.id is not None for j in jobs),
    )


def job(id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{seg(id)}", Job.from_json, idempotent=True)


def wait(id: str, timeout_ms: int) -> Call[Job]:
    return Call(
        "GET",
        f"/v1/jobs/{seg(id)}/wait",
        Job.from_json,
        params={"timeout_ms": timeout_ms},
        idempotent=True,
        hold_ms=timeout_ms,
    )


def list_jobs(
    queue: str, state: JobState | str | None, after: int | None, limit: int, key: str | None = None
) -> Call[Page]:
    params: dict[str, str | int] = {"limit": limit}
    if state is not None:
        params["state"] = str(state)
    if key is not None:
        params["key"] = key
    if after is not None:
        params["after"] = after
    return Call("GET", f"/v1/queues/{seg(queue)}/jobs", _page, params=params, idempotent=True)


def list_starts(queue: str, after: int | None, limit: int) -> Call[StartPage]:
    params: dict[str, str | int] = {"limit": limit}
    if after is not None:
        params["after"] = after
    return Call("GET", f"/v1/queues/{seg(queue)}/starts", _start_page, params=params, idempotent=True)


def attempts(id: str) -> Call[list[Attempt]]:
    return Call("GET", f"/v1/jobs/{seg(id)}/attempts", _attempts, idempotent=True)


def cancel(id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{seg(id)}/cancel", Job.from_json)


def retry(id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{seg(id)}/retry", Job.from_json)


def queue(name: str) -> Call[Queue]:
    return Call("GET", f"/v1/queues/{seg(name)}", Queue.from_json, idempotent=True)


def queues() -> Call[list[Queue]]:
    return Call("GET", "/v1/queues", _queues, idempotent=True)


def configure(
    name: str,
    *,
    concurrency: int | None,
    max_attempts: int | None,
    backoff: Backoff | None,
    lease: Duration | None,
    paused: bool | None,
    executor: Mapping[str, Any] | _Unset | None,
) -> Call[Queue]:
    body: dict[str, Any] = {}
    if concurrency is not None:
        body["concurrency"] = concurrency
    if max_attempts is not None:
        body["max_attempts"] = max_attempts
    if backoff is not None:
        body["backoff"] = backoff.to_json()
    if lease is not None:
        body["lease_ms"] = ms(lease, "lease")
    if paused is not None:
        body["paused"] = paused
    if not isinstance(executor, _Unset):
        body["executor"] = None if executor is None else dict(executor)
    # Setting the same values again changes nothing: safe to resend.
    return Call("PUT", f"/v1/queues/{seg(name)}", Queue.from_json, body=body, idempotent=True)


def claim(queue: str, worker: str, max: int, wait: Duration, lease: Duration | None) -> Call[list[Lease]]:
    wait_ms = ms(wait, "wait")
    body: dict[str, Any] = {"worker": worker, "max": max, "wait_ms": wait_ms}
    if lease is not None:
        body["lease_ms"] = ms(lease, "lease")
    # Not resent: a lost answer's leases would sit unused until they expire.
    return Call("POST", f"/v1/queues/{seg(queue)}/claim", _leases, body=body, hold_ms=wait_ms)


def heartbeat(lease: Lease, progress: Any) -> Call[Heartbeat]:
    body: dict[str, Any] = {"token": lease.token}
    if not isinstance(progress, _Unset):
        body["progress"] = progress
    return Call(
        "POST", f"/v1/jobs/{seg(lease.job.id)}/heartbeat", Heartbeat.from_json, body=body, idempotent=True
    )


def _claim_next(body: dict[str, Any], claim_next: ClaimNext | None) -> int:
    if claim_next is None:
        return 0
    body["claim_next"] = claim_next.to_json()
    return int(body["claim_next"]["wait_ms"])


def complete(lease: Lease, result: Any, claim_next: ClaimNext | None) -> Call[ReportResult]:
    body: dict[str, Any] = {"token": lease.token}
    if not isinstance(result, _Unset):
        body["result"] = result
    hold = _claim_next(body, claim_next)
    # A report sent again is answered as the first one was (same token).
    return Call(
        "POST",
        f"/v1/jobs/{seg(lease.job.id)}/complete",
        ReportResult.from_json,
        body=body,
        idempotent=True,
        hold_ms=hold,
    )


def fail(
    lease: Lease,
    error: Any,
    retry: bool | None,
    retry_after: Duration | None,
    claim_next: ClaimNext | None,
) -> Call[ReportResult]:
    body: dict[str, Any] = {"token": lease.token, "error": error}
    if retry is not None:
        body["retry"] = retry
    if retry_after is not None:
        body["retry_after_ms"] = ms(retry_after, "retry_after")
    hold = _claim_next(body, claim_next)
    return Call(
        "POST",
        f"/v1/jobs/{seg(lease.job.id)}/fail",
        ReportResult.from_json,
        body=body,
        idempotent=True,
        hold_ms=hold,
    )


def raw(
    method: str,
    path: str,
    params: Mapping[str, str | int] | None,
    body: Any,
    content: bytes | None = None,
) -> Call[Any]:
    if content is not None and not isinstance(body, _Unset):
        raise TypeError("give json= or content=, not both")
    return Call(method.upper(), path, lambda obj: obj, params=params, body=body, raw_body=content)
