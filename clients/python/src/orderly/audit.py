"""The server's record of what it ran: every start of a queue (the start
log, in ``start_no`` order) and every attempt of a job. They let anyone
check after the fact the order Orderly actually used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._convert import Reader


@dataclass(frozen=True)
class Start:
    """One start the server made (``GET /v1/queues/{queue}/starts``)."""

    start_no: int
    """The start's number: increases with every start of every queue."""
    seq: int
    """The started job's place in the order of acceptance."""
    job_id: str
    """The started job."""
    key: str | None
    """Its ordering key."""
    attempt: int
    """Which run of the job this was (1 for the first)."""
    worker: str
    """The worker name the claim gave."""
    started_at: datetime
    """When it started (the server's clock)."""

    @classmethod
    def from_json(cls, obj: Any) -> Start:
        """Reads a start record of the API."""
        r = Reader(obj, "start")
        return cls(
            start_no=r.integer("start_no"),
            seq=r.integer("seq"),
            job_id=r.string("job_id"),
            key=r.opt_string("key"),
            attempt=r.integer("attempt"),
            worker=r.string("worker"),
            started_at=r.time("started_at"),
        )


@dataclass(frozen=True)
class Attempt:
    """One run of a job (``GET /v1/jobs/{id}/attempts``)."""

    attempt: int
    """Its number (1 for the first)."""
    start_no: int
    """Its place in the start log."""
    worker: str
    """The worker that ran it."""
    started_at: datetime
    """When it started."""
    ended_at: datetime | None
    """When it ended; ``None`` while it runs."""
    outcome: str | None
    """``succeeded``, ``failed`` or ``cancelled``; ``None`` while it runs."""
    error: Any
    """The attempt's error (any JSON), if it failed."""

    @classmethod
    def from_json(cls, obj: Any) -> Attempt:
        """Reads an attempt record of the API."""
        r = Reader(obj, "attempt")
        return cls(
            attempt=r.integer("attempt"),
            start_no=r.integer("start_no"),
            worker=r.string("worker"),
            started_at=r.time("started_at"),
            ended_at=r.opt_time("ended_at"),
            outcome=r.opt_string("outcome"),
            error=r.any("error"),
        )
