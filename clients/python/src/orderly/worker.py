"""The pull worker: :class:`Worker` runs your functions on the jobs of their queues.

How a run works (one asyncio loop, one :class:`orderly.AsyncClient`):

- Per queue, a claimer long-polls for as many jobs as it has free slots
  (``concurrency`` per queue), in ``seq`` order as the server hands them out.
- Each job runs in a slot: an ``async def`` handler as a task on the loop,
  a plain function in a thread of its own. The slot heartbeats every third
  of the lease's ``lease_ms`` (the server's figure, never a local clock
  reading), sending the progress the handler recorded.
- A heartbeat that says ``cancel_requested`` sets the context's cancel flag;
  an ``async def`` handler is also cancelled ``cancel_grace`` seconds later.
  A plain function must look at the flag (``ctx.cancelled``): threads cannot
  be interrupted, and the job stays ``running``, honestly, until it returns.
- A heartbeat refused as stale (the lease expired and the job went to
  another worker) stops the handler and reports nothing.
- The slot reports the outcome (retried on connection errors: a report sent
  again is answered as the first one was) and claims its next job in the
  same round trip.
- :meth:`Worker.stop` (or SIGTERM/SIGINT under :meth:`Worker.run`) stops
  claiming; running jobs finish and are reported within ``shutdown_grace``
  seconds. Past it (or on a second signal) they are abandoned: cancelled
  with reason ``shutdown`` and not reported, so they run again in their
  place once their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .async_client import AsyncClient
from .client import Client
from .context import JobContext, Outcome, outcome_of
from .errors import (
    ApiError,
    InvalidStateError,
    JobNotFoundError,
    OrderlyError,
    StaleLeaseError,
)
from .models import ClaimNext, Duration, Lease, ms

log = logging.getLogger("orderly.worker")

F = TypeVar("F", bound=Callable[..., Any])

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


def default_name() -> str:
    """``host-pid-random``: unique per process, as the Rust worker's."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


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
class _Handler:
    queue: str
    fn: Callable[..., Any]
    is_async: bool
    takes_ctx: bool


def _inspect_handler(fn: Callable[..., Any]) -> tuple[bool, bool]:
    """(is it ``async def``, does it take a context as its second argument)."""
    if not callable(fn):
        raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return is_async, False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    var = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    if not positional and not var:
        raise TypeError(f"handler {fn!r} must take the payload as its first argument")
    return is_async, var or len(positional) >= 2


class Worker:
    """Runs handlers on the jobs of their queues (see the module docs).

    ``client`` is a :class:`~orderly.Client`, an :class:`~orderly.AsyncClient`
    (used as it is, in the loop :meth:`arun` runs in), a server URL, or
    ``None`` (``ORDERLY_SERVER`` / ``ORDERLY_TOKEN``). ``name`` is shown on
    the jobs it runs (default: host-pid-random). ``concurrency`` jobs of each
    queue run at once (the queue's own ``concurrency`` still caps the total
    across workers); ``lease`` (seconds) is asked for instead of the queue's;
    ``poll`` is the claim's long poll, in seconds.
    """

    def __init__(
        self,
        client: Client | AsyncClient | str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 1,
        lease: Duration | None = None,
        poll: float = 25.0,
        shutdown_grace: float = 30.0,
        cancel_grace: float = 5.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not 0 <= poll <= 300:
            raise ValueError(f"poll must be 0 to 300 seconds (the server's cap), got {poll}")
        if lease is not None:
            ms(lease, "lease")
        self._client = client
        self.name = name or default_name()
        """Worker name shown on the jobs it runs."""
        self.concurrency = concurrency
        self.lease = lease
        self.poll = poll
        self.shutdown_grace = shutdown_grace
        self.cancel_grace = cancel_grace
        self._handlers: dict[str, _Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: _Run | None = None
        self._stop_early = threading.Event()

    def handler(self, queue: str) -> Callable[[F], F]:
        """Decorator: runs the function on every job of ``queue``.

        The function takes the payload, and optionally a :class:`~orderly.JobContext`
        as its second argument; it may be ``async def``. What it returns
        (JSON-serialisable) is the job's result; an exception fails the
        attempt (``Retry``/``Fail`` choose what follows).
        """

        def register(fn: F) -> F:
            self.add_handler(queue, fn)
            return fn

        return register

    def add_handler(self, queue: str, fn: Callable[..., Any]) -> None:
        """Registers ``fn`` for ``queue`` (what :meth:`handler` does)."""
        if queue in self._handlers:
            raise ValueError(f"queue {queue!r} already has a handler: {self._handlers[queue].fn!r}")
        is_async, takes_ctx = _inspect_handler(fn)
        self._handlers[queue] = _Handler(queue, fn, is_async, takes_ctx)

    @property
    def queues(self) -> list[str]:
        """The queues that have a handler."""
        return list(self._handlers)

    def stop(self) -> None:
        """Stops a run gracefully (from any thread): no more claims, running jobs finish."""
        loop, run = self._loop, self._run
        if loop is None or run is None:
            self._stop_early.set()
            return
        loop.call_soon_threadsafe(run.request_stop)

    def run(
        self,
        *,
        concurrency: int | None = None,
        queues: Iterable[str] | None = None,
        max_jobs: int | None = None,
        install_signal_handlers: bool = True,
    ) -> Summary:
        """Runs until stopped (SIGTERM/SIGINT, :meth:`stop`) or ``max_jobs``
        jobs were run; blocks. See :meth:`arun`."""
        return asyncio.run(
            self.arun(
                concurrency=concurrency,
                queues=queues,
                max_jobs=max_jobs,
                install_signal_handlers=install_signal_handlers,
            )
        )

    async def arun(
        self,
        *,
        concurrency: int | None = None,
        queues: Iterable[str] | None = None,
        max_jobs: int | None = None,
        install_signal_handlers: bool = False,
    ) -> Summary:
        """Runs in the current event loop until stopped or ``max_jobs`` jobs
        were run. ``queues`` picks some of the registered queues; ``concurrency``
        overrides the constructor's. Raises :class:`ClaimRefusedError` when
        the server refuses a claim for good."""
        names = list(queues) if queues is not None else self.queues
        missing = [q for q in names if q not in self._handlers]
        if missing:
            raise ValueError(f"no handler for queue(s) {missing}: registered {self.queues}")
        if not names:
            raise ValueError("no handler registered: decorate a function with @worker.handler('queue')")
        n = concurrency if concurrency is not None else self.concurrency
        if n < 1:
            raise ValueError(f"concurrency must be at least 1, got {n}")
        client, owned = self._async_client()
        loop = asyncio.get_running_loop()
        run = _Run(self, client, n, max_jobs)
        self._loop, self._run = loop, run
        if self._stop_early.is_set():
            self._stop_early.clear()
            run.request_stop()
        signals = _install_signals(loop, run) if install_signal_handlers else []
        log.info("worker %s on %s (server %s, %d at once per queue)", self.name, names, client.url, n)
        try:
            loops = [asyncio.ensure_future(run.queue_loop(self._handlers[q])) for q in names]
            supervisor = asyncio.ensure_future(run.supervise(loops))
            results = await asyncio.gather(*loops, return_exceptions=True)
            supervisor.cancel()
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            return run.summary
        finally:
            for s in signals:
                loop.remove_signal_handler(s)
            self._loop, self._run = None, None
            if owned:
                await client.aclose()

    def _async_client(self) -> tuple[AsyncClient, bool]:
        c = self._client
        if isinstance(c, AsyncClient):
            return c, False
        if isinstance(c, Client):
            s = c.settings
            return (
                AsyncClient(
                    s.url,
                    token=s.token,
                    timeout=s.timeout,
                    retries=s.retries,
                    retry_backoff=s.retry_backoff,
                    headers=s.headers,
                ),
                True,
            )
        return AsyncClient(c), True


def _install_signals(loop: asyncio.AbstractEventLoop, run: _Run) -> list[int]:
    """SIGTERM/SIGINT stop the run; a second one abandons the running jobs."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(s, run.on_signal, s)
        except (NotImplementedError, RuntimeError):
            continue
        installed.append(int(s))
    return installed


class _Run:
    """One run of a worker: the queue loops, their slots, and the stop/abandon events."""

    def __init__(self, worker: Worker, client: AsyncClient, concurrency: int, max_jobs: int | None):
        self.w = worker
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

    async def queue_loop(self, h: _Handler) -> None:
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
                except ApiError as e:
                    self.release(n)
                    if not e.is_server_error:
                        self.request_stop()
                        raise ClaimRefusedError(f"claim on queue {h.queue!r} refused: {e}") from e
                    log.warning("claim on %s failed (%s); retrying in %.1f s", h.queue, e, backoff)
                    await _first(asyncio.sleep(backoff), self.stop.wait())
                    backoff = min(backoff * 2, CLAIM_RETRY_MAX)
                    continue
                except OrderlyError as e:
                    self.release(n)
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

    async def slot(self, h: _Handler, lease: Lease | None) -> None:
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

    async def run_one(self, h: _Handler, lease: Lease) -> Outcome | None:
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

    async def _stop_handler(self, h: _Handler, task: asyncio.Future[Any]) -> None:
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
