"""What a handler sees and says: the :class:`JobContext` it may take as its
second argument, and the exceptions it may raise to choose what happens
next (:class:`Retry`, :class:`Fail`, :class:`JobCancelled`). Also the one
place that turns a handler's return value or exception into a report.
"""

from __future__ import annotations

import asyncio
import json
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Literal

from ._convert import Duration
from ._ops import UNSET, _Unset
from .models import Job, Lease

CancelReason = Literal["requested", "lease_lost", "shutdown"]
"""Why a job was asked to stop: someone cancelled it, its lease was lost
(it runs again elsewhere), or the worker is shutting down past its grace
period (it runs again, in its place)."""

MAX_TRACEBACK_CHARS = 16_000
"""A traceback kept in an error is cut to its last this many characters."""


class Retry(Exception):
    """Raise from a handler to fail this attempt and run the job again,
    ``after`` seconds from now (default: the queue's backoff), while
    attempts remain."""

    def __init__(self, message: str = "retry requested by the handler", *, after: Duration | None = None):
        super().__init__(message)
        self.after = after


class Fail(Exception):
    """Raise from a handler to fail the job for good (no retry, whatever the
    attempts left). ``details`` (any JSON) is kept in the error."""

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.details = details


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.raise_if_cancelled`; a handler that lets
    it out (or raises it) ends the attempt without a retry."""

    def __init__(self, reason: CancelReason | None):
        super().__init__(f"job stopped: {reason or 'cancelled'}")
        self.reason = reason


class JobContext:
    """The running job, a cancellation flag, and progress reporting.

    Safe to use from the handler's thread (a plain function runs in a
    thread of its own) and from the event loop (an ``async def`` handler).
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        """The lease the job runs under."""
        self.job: Job = lease.job
        """The job as claimed (``attempt`` is this attempt's number)."""
        self._flag = threading.Event()
        self._aflag = asyncio.Event()
        self._reason: CancelReason | None = None
        self._lock = threading.Lock()
        self._progress: Any = UNSET

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop (see :attr:`cancel_reason`)."""
        return self._flag.is_set()

    @property
    def cancel_reason(self) -> CancelReason | None:
        """Why the job was asked to stop, or ``None``."""
        return self._reason

    def progress(self, value: Any) -> None:
        """Records progress (any JSON), sent with the next heartbeat; shown on the job."""
        json.dumps(value, allow_nan=False)
        with self._lock:
            self._progress = value

    def raise_if_cancelled(self) -> None:
        """Raises :class:`JobCancelled` once the job was asked to stop."""
        if self.cancelled:
            raise JobCancelled(self._reason)

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Blocks (a plain handler's thread) until the job is asked to stop or
        ``timeout`` seconds pass; True if it was asked. A sleep that a cancel cuts short."""
        return self._flag.wait(timeout)

    async def until_cancelled(self, timeout: float | None = None) -> bool:
        """Waits (an ``async def`` handler) until the job is asked to stop or
        ``timeout`` seconds pass; True if it was asked."""
        try:
            await asyncio.wait_for(self._aflag.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _cancel(self, reason: CancelReason) -> None:
        """Asks the job to stop (on the event loop's thread)."""
        if not self._flag.is_set():
            self._reason = reason
            self._flag.set()
            self._aflag.set()

    def _take_progress(self) -> Any:
        with self._lock:
            p, self._progress = self._progress, UNSET
            return p

    def _put_back_progress(self, value: Any) -> None:
        """Keeps progress a failed heartbeat did not deliver (unless newer came)."""
        if isinstance(value, _Unset):
            return
        with self._lock:
            if isinstance(self._progress, _Unset):
                self._progress = value


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as it is reported."""

    ok: bool
    result: Any = None
    error: Any = None
    retry: bool | None = None
    retry_after: Duration | None = None


def error_of(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    """The error kept on the job: ``{"type", "message", "traceback"}``."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    out: dict[str, Any] = {"type": name, "message": str(exc)}
    if with_traceback:
        tb = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
        out["traceback"] = tb[-MAX_TRACEBACK_CHARS:]
    return out


def outcome_of(value: Any, exc: BaseException | None, ctx: JobContext) -> Outcome:
    """The report for a handler that returned ``value`` or raised ``exc``."""
    out = _outcome(value, exc, ctx)
    if not out.ok and ctx.cancel_reason == "requested":
        # A cancelled job does not come back.
        return Outcome(ok=False, error=out.error, retry=False)
    return out


def _outcome(value: Any, exc: BaseException | None, ctx: JobContext) -> Outcome:
    if exc is None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            return Outcome(
                ok=False,
                error={
                    "type": type(e).__name__,
                    "message": f"the handler's return value is not JSON-serialisable: {e}",
                },
                retry=False,
            )
        return Outcome(ok=True, result=value)
    if isinstance(exc, Retry):
        return Outcome(ok=False, error=error_of(exc, with_traceback=False), retry=True, retry_after=exc.after)
    if isinstance(exc, Fail):
        error = error_of(exc)
        if exc.details is not None:
            error["details"] = exc.details
        return Outcome(ok=False, error=error, retry=False)
    if isinstance(exc, (JobCancelled, asyncio.CancelledError)):
        reason = ctx.cancel_reason or "cancelled"
        return Outcome(
            ok=False,
            error={"type": "JobCancelled", "message": f"the handler stopped: {reason}"},
            retry=False,
        )
    return Outcome(ok=False, error=error_of(exc), retry=True)
