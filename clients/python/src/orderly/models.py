"""Typed views of what the server sends (contract sections 4.1 and 5), and
:class:`NewJob`, a job to enqueue.

Models are frozen dataclasses read from the server's JSON with
``from_json``; fields the server adds in later releases are ignored (and
kept in ``raw``), fields it has not sent yet (``key_position``,
``waiting_on``, ``eta``) are ``None``. Times are timezone-aware
:class:`datetime.datetime` objects in UTC; durations keep the server's
milliseconds (``lease_ms``, ``timeout_ms``), named so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from ._convert import Duration, Reader, ms, rfc3339
from .errors import OrderlyError


class JobState(str, Enum):
    """A job's state."""

    SCHEDULED = "scheduled"
    """Waiting for its ``run_at`` (a delay or a retry backoff)."""
    QUEUED = "queued"
    """Ready: starts when first in line and capacity is free."""
    RUNNING = "running"
    """Held by a worker under a lease."""
    SUCCEEDED = "succeeded"
    """Finished successfully."""
    FAILED = "failed"
    """Finished with no attempts left (or a failure the worker called final)."""
    CANCELLED = "cancelled"
    """Cancelled."""

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        """True for succeeded, failed and cancelled."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def is_waiting(self) -> bool:
        """True for scheduled and queued."""
        return self in (JobState.SCHEDULED, JobState.QUEUED)


@dataclass(frozen=True)
class WaitingOn:
    """Why a waiting job has not started (contract section 4.1)."""

    reason: str
    """``scheduled``, ``retry_backoff``, ``key``, ``concurrency``, ``line``, ``paused`` or ``no_worker``."""
    job: str | None = None
    """For ``key``: the earlier unfinished job of its key."""
    until: datetime | None = None
    """For ``scheduled`` and ``retry_backoff``: when it becomes ready."""
    limit: int | None = None
    """For ``concurrency``: how many jobs the queue runs at once."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The object as the server sent it."""

    @classmethod
    def from_json(cls, obj: Any) -> WaitingOn:
        """Reads the server's ``waiting_on`` object."""
        r = Reader(obj, "waiting_on")
        return cls(
            reason=r.string("reason"),
            job=r.opt_string("job"),
            until=r.opt_time("until"),
            limit=r.opt_integer("limit"),
            raw=r.obj,
        )


@dataclass(frozen=True)
class Eta:
    """When a waiting job will likely start: an estimate, never a promise."""

    earliest: datetime | None
    """Earliest likely start."""
    latest: datetime | None
    """Latest likely start."""

    @classmethod
    def from_json(cls, obj: Any) -> Eta:
        """Reads the server's ``eta`` object."""
        r = Reader(obj, "eta")
        return cls(earliest=r.opt_time("earliest"), latest=r.opt_time("latest"))


@dataclass(frozen=True)
class Job:
    """A job as the API shows it (contract section 4.1)."""

    id: str
    """Job id (client-chosen, or a UUID the server made)."""
    queue: str
    """Queue name."""
    key: str | None
    """Ordering key."""
    seq: int
    """Acceptance order, strictly increasing."""
    state: JobState
    """Its state."""
    position: int | None
    """For a waiting job: waiting jobs of its queue ahead of it; otherwise ``None``."""
    payload: Any
    """The job's input, as enqueued."""
    attempt: int
    """Starts so far (0 until it first runs)."""
    max_attempts: int
    """Starts allowed."""
    timeout_ms: int | None
    """Per-attempt time limit."""
    enqueued_at: datetime
    """When accepted."""
    run_at: datetime
    """Not before."""
    started_at: datetime | None
    """Latest start."""
    finished_at: datetime | None
    """When finished."""
    progress: Any
    """Latest progress a worker reported."""
    result: Any
    """Result on success."""
    error: Any
    """Latest error."""
    cancel_requested: bool
    """A cancel was requested while it ran."""
    worker: str | None
    """Worker holding (or last holding) the job."""
    lease_expires_at: datetime | None
    """Expiry of the running attempt's lease (the server's clock)."""
    start_no: int | None
    """Global start counter of the latest start (the audit of start order)."""
    key_position: int | None = None
    """Unfinished jobs of its key ahead of it (servers that send it)."""
    waiting_on: WaitingOn | None = None
    """Why it has not started yet (servers that send it)."""
    eta: Eta | None = None
    """When it will likely start, an estimate (servers that send it)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The object as the server sent it."""

    @property
    def is_finished(self) -> bool:
        """True once succeeded, failed or cancelled."""
        return self.state.is_finished

    @classmethod
    def from_json(cls, obj: Any) -> Job:
        """Reads a job object of the API."""
        r = Reader(obj, "job")
        state = r.string("state")
        try:
            job_state = JobState(state)
        except ValueError:
            raise OrderlyError(f"job.state: unknown state {state!r} from the server") from None
        waiting_on = r.any("waiting_on")
        eta = r.any("eta")
        return cls(
            id=r.string("id"),
            queue=r.string("queue"),
            key=r.opt_string("key"),
            seq=r.integer("seq"),
            state=job_state,
            position=r.opt_integer("position"),
            payload=r.any("payload"),
            attempt=r.integer("attempt"),
            max_attempts=r.integer("max_attempts"),
            timeout_ms=r.opt_integer("timeout_ms"),
            enqueued_at=r.time("enqueued_at"),
            run_at=r.time("run_at"),
            started_at=r.opt_time("started_at"),
            finished_at=r.opt_time("finished_at"),
            progress=r.any("progress"),
            result=r.any("result"),
            error=r.any("error"),
            cancel_requested=bool(r.any("cancel_requested")),
            worker=r.opt_string("worker"),
            lease_expires_at=r.opt_time("lease_expires_at"),
            start_no=r.opt_integer("start_no"),
            key_position=r.opt_integer("key_position"),
            waiting_on=None if waiting_on is None else WaitingOn.from_json(waiting_on),
            eta=None if eta is None else Eta.from_json(eta),
            raw=r.obj,
        )


@dataclass(frozen=True)
class Backoff:
    """Retry delays of a queue, in milliseconds as the server keeps them."""

    initial_ms: int = 1000
    """First retry delay."""
    max_ms: int = 3_600_000
    """Longest delay."""
    factor: float = 2.0
    """Growth per failure."""

    def to_json(self) -> dict[str, Any]:
        """The wire object."""
        return {"initial_ms": self.initial_ms, "max_ms": self.max_ms, "factor": self.factor}

    @classmethod
    def from_json(cls, obj: Any) -> Backoff:
        """Reads a backoff object of the API."""
        r = Reader(obj, "backoff")
        return cls(initial_ms=r.integer("initial_ms"), max_ms=r.integer("max_ms"), factor=r.number("factor"))


@dataclass(frozen=True)
class Counts:
    """A queue's jobs per state."""

    scheduled: int
    """Waiting for ``run_at``."""
    queued: int
    """Ready."""
    running: int
    """Leased."""
    succeeded: int
    """Done."""
    failed: int
    """Failed for good."""
    cancelled: int
    """Cancelled."""

    @classmethod
    def from_json(cls, obj: Any) -> Counts:
        """Reads a counts object of the API."""
        r = Reader(obj, "counts")
        return cls(**{s.value: r.integer(s.value) for s in JobState})


@dataclass(frozen=True)
class Queue:
    """A queue: its configuration and counts."""

    name: str
    """Name."""
    concurrency: int
    """Most jobs running at once."""
    max_attempts: int
    """Default starts per job."""
    backoff: Backoff
    """Retry delays."""
    lease_ms: int
    """Default lease length."""
    paused: bool
    """A paused queue accepts jobs and starts none."""
    executor: Any
    """Server-side executor configuration (``None``: pull workers)."""
    counts: Counts
    """Jobs per state."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The object as the server sent it."""

    @classmethod
    def from_json(cls, obj: Any) -> Queue:
        """Reads a queue object of the API."""
        r = Reader(obj, "queue")
        return cls(
            name=r.string("name"),
            concurrency=r.integer("concurrency"),
            max_attempts=r.integer("max_attempts"),
            backoff=Backoff.from_json(r.any("backoff")),
            lease_ms=r.integer("lease_ms"),
            paused=r.boolean("paused"),
            executor=r.any("executor"),
            counts=Counts.from_json(r.any("counts")),
            raw=r.obj,
        )


@dataclass(frozen=True)
class Lease:
    """A claimed job: run it, heartbeat within ``lease_ms``, report with ``token``."""

    job: Job
    """The job (state ``running``)."""
    token: str
    """Token for heartbeats and reports."""
    expires_at: datetime
    """Expiry unless renewed (the server's clock)."""
    lease_ms: int
    """Length of the lease as granted: pace heartbeats from this, not from ``expires_at``."""

    @classmethod
    def from_json(cls, obj: Any) -> Lease:
        """Reads a lease object of the API."""
        r = Reader(obj, "lease")
        return cls(
            job=Job.from_json(r.any("job")),
            token=r.string("token"),
            expires_at=r.time("expires_at"),
            lease_ms=r.integer("lease_ms"),
        )


@dataclass(frozen=True)
class Heartbeat:
    """Answer to a heartbeat."""

    expires_at: datetime
    """New lease expiry (the server's clock)."""
    lease_ms: int
    """Length of the renewed lease."""
    cancel_requested: bool
    """Someone cancelled the job: stop and report."""

    @classmethod
    def from_json(cls, obj: Any) -> Heartbeat:
        """Reads a heartbeat answer."""
        r = Reader(obj, "heartbeat")
        return cls(
            expires_at=r.time("expires_at"),
            lease_ms=r.integer("lease_ms"),
            cancel_requested=r.boolean("cancel_requested"),
        )


@dataclass(frozen=True)
class ReportResult:
    """Answer to ``complete`` and ``fail``."""

    job: Job
    """The job after the report."""
    leases: list[Lease] | None
    """The next leases, when ``claim_next`` was asked."""

    @classmethod
    def from_json(cls, obj: Any) -> ReportResult:
        """Reads a report answer."""
        r = Reader(obj, "report")
        leases = r.any("leases")
        return cls(
            job=Job.from_json(r.any("job")),
            leases=None if leases is None else [Lease.from_json(x) for x in r.items("leases")],
        )


@dataclass(frozen=True)
class Health:
    """Answer of ``/healthz``."""

    ok: bool
    """The server is healthy."""
    status: str
    """``ok`` or ``unhealthy``."""
    reason: str | None = None
    """Why unhealthy."""


@dataclass(frozen=True)
class ClaimNext:
    """Ask a report to claim the next jobs of the same queue in the same round trip."""

    worker: str
    """Worker name."""
    max: int = 1
    """Most leases to take."""
    wait: Duration = 0.0
    """Long poll when nothing is ready (seconds)."""
    lease: Duration | None = None
    """Lease length (default: the queue's)."""

    def to_json(self) -> dict[str, Any]:
        """The wire object."""
        out: dict[str, Any] = {"worker": self.worker, "max": self.max, "wait_ms": ms(self.wait, "wait")}
        if self.lease is not None:
            out["lease_ms"] = ms(self.lease, "lease")
        return out


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue (see :meth:`orderly.Client.enqueue` for the fields)."""

    payload: Any
    """Input for the worker, any JSON value (``None`` is a payload too)."""
    id: str | None = None
    """Client-chosen id: makes the enqueue idempotent and safe to retry."""
    key: str | None = None
    """Ordering key: jobs with the same key run one at a time, in order."""
    delay: Duration | None = None
    """Not before this long from now."""
    run_at: datetime | str | None = None
    """Not before this time (an aware datetime, or an RFC 3339 string)."""
    max_attempts: int | None = None
    """Starts allowed (overrides the queue's)."""
    timeout: Duration | None = None
    """Per-attempt time limit."""

    def to_json(self) -> dict[str, Any]:
        """The wire object (``EnqueueRequest``)."""
        out: dict[str, Any] = {"payload": self.payload}
        if self.id is not None:
            out["id"] = self.id
        if self.key is not None:
            out["key"] = self.key
        if self.delay is not None:
            out["delay_ms"] = ms(self.delay, "delay")
        if self.run_at is not None:
            out["run_at"] = rfc3339(self.run_at, "run_at")
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.timeout is not None:
            out["timeout_ms"] = ms(self.timeout, "timeout")
        return out
