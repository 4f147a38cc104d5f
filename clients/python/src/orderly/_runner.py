"""The inside of a :class:`orderly.Worker` run (see ``orderly.worker`` for
what it does): per queue a claimer, per job a slot that runs the handler,
heartbeats and reports; the stop and abandon events; the ``max_jobs`` quota.
Everything here runs on one event loop's thread, but plain handlers, which
run in threads of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._convert import Duration
from .async_client import AsyncClient
from .context import JobContext, Outcome, outcome_of
from .errors import (
    ApiError,
    InvalidStateError,
    JobNotFoundError,
    OrderlyError,
    StaleLeaseError,
)
from .models import ClaimNext, Lease

log = logging.getLogger("orderly.worker")

MIN_HEARTBEAT = 0.05
"""Shortest pause between two heartbeats, in seconds."""
DEFAULT_LEASE_MS = 30_000
"""Lease length assumed when the server does not say."""
STOP_WAIT = 5.0
"""How long a cancelled async handler may take to end before the slot stops waiting for it."""
CLAIM_RETRY_INITIAL = 0.2
CLAIM_RETRY_MAX = 5.0


def heartbeat_interval(lease_ms: int) -> float:
    """Seconds between heartbeats of a lease of ``lease_ms``: a third of it,
    so two heartbeats in a row may be lost before it expires."""
    return max(MIN_HEARTBEAT, (lease_ms or DEFAULT_LEASE_MS) / 3000)


class ClaimRefusedError(OrderlyError):
    """The server refused a claim for good (bad queue name, wrong token…):
    the worker stops."""


@dataclass
class Summary:
    """What a run did."""

    started: int = 0
    """Jobs handed to a handler."""
    succeeded: int = 0
    """Reported as succeeded."""
    failed: int = 0
    """Reported as failed (to be retried or not)."""
    unreported: int = 0
    """Not reported: lease lost, report not delivered, or abandoned at shutdown."""
    abandoned: int = 0
    """Of those, given up at shutdown (they run again in their place)."""


@dataclass(frozen=True)
class Handler:
    """A registered handler and how to call it."""

    queue: str
    fn: Callable[..., Any]
    is_async: bool
    takes_ctx: bool


@dataclass(frozen=True)
class RunSettings:
    """What a run takes from its :class:`orderly.Worker`."""

    name: str
    lease: Duration | None
    poll: float
    shutdown_grace: float
    cancel_grace: float


class Run:
    """One run of a worker: the queue loops, their slots, and the stop/abandon events."""

    def __init__(self, settings: RunSettings, client: AsyncClient, concurrency: int, max_jobs: int | None):
        self.w = settings
        self.client = client
        self.concurrency = concurrency
        self.left = max_jobs
        self.held = 0
        self.quota_changed = asyncio.Event()
        self.stop = asyncio.Event()
        self.abandon = asyncio.Event()
        self.summary = Summary()

    # Stopping.

    def request_stop(self) -> None:
        if not self.stop.is_set():
            log.info("stopping: no more claims; running jobs finish (at most %.1f s)", self.w.shutdown_grace)
            self.stop.set()

    def on_signal(self, sig: int) -> None:
        if self.stop.is_set():
            log.warning("second signal: giving up the running jobs (they run again in their place)")
            self.abandon.set()
        else:
            self.request_stop()

    async def supervise(self, loops: Sequence[asyncio.Future[None]]) -> None:
        """After a stop, gives the loops ``shutdown_grace`` before abandoning their jobs."""
        await self.stop.wait()
        _, pending = await asyncio.wait(loops, timeout=self.w.shutdown_grace)
        if pending:
            log.warning("shutdown grace of %.1f s passed: giving up the running jobs", self.w.shutdown_grace)
            self.abandon.set()

    # The max_jobs quota (only touched on the loop's thread): a claim reserves
    # what it asks for, and gives back what it did not get.

    def reserve(self, n: int) -> int:
        if self.left is None:
            return n
        k = min(n, self.left)
        self.left -= k
        self.held += k
        return k

    def release(self, n: int) -> None:
        """Gives back ``n`` reserved jobs that no lease came for."""
        if self.left is not None:
            self.left += n
            self.held -= n
            self.quota_changed.set()

    def consume(self, n: int) -> None:
        """``n`` reserved jobs were claimed."""
        if self.left is not None:
            self.held -= n
            self.quota_changed.set()

    def exhausted(self) -> bool:
        """Every job of ``max_jobs`` was claimed."""
        return self.left == 0 and self.held == 0

    # The claimer.

    async def queue_loop(self, h: Handler) -> None:
        free = self.concurrency
        freed = asyncio.Event()
        slots: set[asyncio.Task[None]] = set()
        backoff = CLAIM_RETRY_INITIAL

        def slot_done(t: asyncio.Task[None]) -> None:
            nonlocal free
            free += 1
            slots.discard(t)
            freed.set()

        try:
            while not self.stop.is_set():
                if free == 0:
                    freed.clear()
                    await _first(freed.wait(), self.stop.wait())
                    continue
                n = self.reserve(free)
                if n == 0:
                    if self.exhausted():
                        break
                    # Another claim holds the rest of max_jobs: see what it gets.
                    self.quota_changed.clear()
                    await _first(self.quota_changed.wait(), self.stop.wait())
                    continue
                claim = asyncio.ensure_future(
                    self.client.claim(h.queue, self.w.name, max=n, wait=self.w.poll, lease=self.w.lease)
                )
                await _first(claim, self.stop.wait())
                if not claim.done():
                    claim.cancel()
                    self.release(n)
                    break
                try:
                    leases = claim.result()
                except OrderlyError as e:
                    self.release(n)
                    if isinstance(e, ApiError) and not e.is_server_error:
                        self.request_stop()
                        raise ClaimRefusedError(f"claim on queue {h.queue!r} refused: {e}") from e
                    log.warning("claim on %s failed (%s); retrying in %.1f s", h.queue, e, backoff)
                    await _first(asyncio.sleep(backoff), self.stop.wait())
                    backoff = min(backoff * 2, CLAIM_RETRY_MAX)
                    continue
                backoff = CLAIM_RETRY_INITIAL
                self.consume(len(leases))
                self.release(n - len(leases))
                for lease in leases:
                    free -= 1
                    t = asyncio.ensure_future(self.slot(h, lease))
                    slots.add(t)
                    t.add_done_callback(slot_done)
        finally:
            if slots:
                await asyncio.gather(*list(slots), return_exceptions=True)

    # A slot: run, report, take the next job the report brought.

    async def slot(self, h: Handler, lease: Lease | None) -> None:
        while lease is not None:
            outcome = await self.run_one(h, lease)
            if outcome is None:
                return
            want = not self.stop.is_set() and self.reserve(1) == 1
            claim_next = ClaimNext(self.w.name, 1, 0.0, self.w.lease) if want else None
            nxt = await self.report(lease, outcome, claim_next)
            if want:
                if nxt is None:
                    self.release(1)
                else:
                    self.consume(1)
            lease = nxt

    async def run_one(self, h: Handler, lease: Lease) -> Outcome | None:
        """Runs one job with heartbeats; ``None`` when nothing is to be reported."""
        job = lease.job
        ctx = JobContext(lease)
        log.info("job %s started (queue %s, seq %d, attempt %d)", job.id, job.queue, job.seq, job.attempt)
        self.summary.started += 1
        args = (job.payload, ctx) if h.takes_ctx else (job.payload,)
        task: asyncio.Future[Any] = (
            asyncio.ensure_future(h.fn(*args)) if h.is_async else _in_thread(h.fn, args, job.id)
        )
        loop = asyncio.get_running_loop()
        every = heartbeat_interval(lease.lease_ms)
        next_beat = loop.time() + every
        kill_at: float | None = None
        abandon = asyncio.ensure_future(self.abandon.wait())
        try:
            while not task.done():
                until = next_beat if kill_at is None else min(next_beat, kill_at)
                await asyncio.wait(
                    {task, abandon},
                    timeout=max(0.0, until - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if task.done():
                    break
                if abandon.done():
                    log.warning(
                        "job %s: given up at shutdown, not reported (it runs again in its place)", job.id
                    )
                    ctx._cancel("shutdown")
                    await self._stop_handler(h, task)
                    self.summary.unreported += 1
                    self.summary.abandoned += 1
                    return None
                if kill_at is not None and loop.time() >= kill_at:
                    task.cancel()
                    kill_at = None
                if loop.time() < next_beat:
                    continue
                progress = ctx._take_progress()
                try:
                    beat = await self.client.heartbeat(lease, progress)
                except (StaleLeaseError, JobNotFoundError, InvalidStateError) as e:
                    log.warning("job %s: lease lost (%s); stopping it, not reporting", job.id, e)
                    ctx._cancel("lease_lost")
                    await self._stop_handler(h, task)
                    self.summary.unreported += 1
                    return None
                except OrderlyError as e:
                    log.warning("job %s: heartbeat failed (%s); will retry", job.id, e)
                    ctx._put_back_progress(progress)
                else:
                    every = heartbeat_interval(beat.lease_ms)
                    if beat.cancel_requested and not ctx.cancelled:
                        log.info("job %s: cancel requested; stopping it", job.id)
                        ctx._cancel("requested")
                        if h.is_async:
                            kill_at = loop.time() + self.w.cancel_grace
                next_beat = loop.time() + every
        finally:
            abandon.cancel()
        if task.cancelled():
            return outcome_of(None, asyncio.CancelledError(), ctx)
        exc = task.exception()
        return outcome_of(None if exc is not None else task.result(), exc, ctx)

    async def _stop_handler(self, h: Handler, task: asyncio.Future[Any]) -> None:
        """Gives a handler that was asked to stop ``cancel_grace`` to return;
        then an async one is cancelled, and a thread is left behind."""
        await asyncio.wait({task}, timeout=self.w.cancel_grace)
        if not task.done() and h.is_async:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT)
        if not task.done():
            log.warning("a handler did not return %.1f s after it was asked to stop", self.w.cancel_grace)
        elif not task.cancelled():
            task.exception()  # retrieved: not reported, and not logged as never retrieved

    async def report(self, lease: Lease, o: Outcome, claim_next: ClaimNext | None) -> Lease | None:
        """Reports an outcome; returns the next lease ``claim_next`` brought."""
        job = lease.job
        try:
            if o.ok:
                r = await self.client.complete(lease, o.result, claim_next=claim_next)
            else:
                r = await self.client.fail(
                    lease, o.error, retry=o.retry, retry_after=o.retry_after, claim_next=claim_next
                )
        except OrderlyError as e:
            log.warning("job %s: report not taken (%s); it runs again once its lease expires", job.id, e)
            self.summary.unreported += 1
            return None
        if o.ok:
            self.summary.succeeded += 1
            log.info("job %s succeeded", job.id)
        else:
            self.summary.failed += 1
            message = o.error.get("message") if isinstance(o.error, Mapping) else o.error
            log.info("job %s failed (now %s): %s", job.id, r.job.state, message)
        return r.leases[0] if r.leases else None


async def _first(*aws: Any) -> None:
    """Waits until the first of ``aws`` is done; cancels the others it made
    (a given future is left running)."""
    futs = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]
    made = [f for f, a in zip(futs, aws, strict=True) if f is not a]
    try:
        await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in made:
            f.cancel()


def _in_thread(fn: Callable[..., Any], args: tuple[Any, ...], job_id: str) -> asyncio.Future[Any]:
    """Runs a plain handler in a daemon thread of its own (one a handler
    refuses to leave never holds up other jobs or the process's exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(value: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    def target() -> None:
        try:
            value, exc = ctx.run(fn, *args), None
        except BaseException as e:  # noqa: BLE001 - every failure becomes the job's error
            value, exc = None, e
        # A RuntimeError: the loop is gone (the run ended without waiting for this thread).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, exc)

    threading.Thread(target=target, name=f"orderly-job-{job_id}", daemon=True).start()
    return fut
