"""The synchronous client: :class:`Client`.

Every method is one call of the API (see ``orderly._ops``), sent over one
``httpx.Client`` (connections are reused). Calls that are safe to send
again — reads, ``configure``, heartbeats, reports, and an enqueue that names
its job ``id`` — are retried with backoff after a connection error or a 5xx;
the others are sent once. :class:`orderly.AsyncClient` has the same methods.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _ops
from ._convert import Duration, ms
from ._http import Settings, read, request_kwargs, should_retry, transport_error
from ._ops import UNSET, Call, _Unset, retry_delay
from .audit import Attempt, Start
from .errors import OrderlyError
from .events import Dropped, EventItem, Reconnects, Resume, SseParser, is_stream, no_answer, open_error
from .models import (
    Backoff,
    ClaimNext,
    Health,
    Heartbeat,
    Job,
    JobState,
    Lease,
    NewJob,
    Queue,
    ReportResult,
)

T = TypeVar("T")


class Client:
    """A connection to an Orderly server.

    ``url`` defaults to ``ORDERLY_SERVER``, then ``http://127.0.0.1:7771``;
    ``token`` to ``ORDERLY_TOKEN``. ``timeout`` (seconds) bounds each call
    (a long poll gets its own duration on top); ``retries`` is how many times
    an idempotent call is sent again, after ``retry_backoff`` seconds growing
    exponentially (with jitter, at most 5 s). Use it as a context manager, or
    call :meth:`close`.
    """

    wait_chunk: float = _ops.MAX_WAIT_MS / 1000
    """Longest single ``/wait`` call (the server's cap); :meth:`wait` loops past it."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        retry_backoff: float = 0.25,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = Settings.resolve(url, token, timeout, retries, retry_backoff, headers)
        """Where and how this client talks to the server."""
        self._http = httpx.Client(**self.settings.client_kwargs())

    @property
    def url(self) -> str:
        """The server's URL."""
        return self.settings.url

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _run(self, call: Call[T], headers: Mapping[str, str] | None = None) -> T:
        s = self.settings
        tries = 0
        while True:
            tries += 1
            try:
                response = self._http.request(**request_kwargs(call, s, headers))
            except httpx.TransportError as e:
                if should_retry(call, e, tries, s):
                    time.sleep(retry_delay(tries, s.retry_backoff))
                    continue
                raise transport_error(call, e, s) from e
            if should_retry(call, response, tries, s):
                time.sleep(retry_delay(tries, s.retry_backoff))
                continue
            return read(call, response)

    # Jobs.

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        id: str | None = None,
        key: str | None = None,
        delay: Duration | None = None,
        run_at: datetime | str | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
    ) -> Job:
        """Enqueues one job on ``queue`` and returns it once durably accepted.

        ``payload`` is any JSON value. ``id`` makes the enqueue idempotent
        (the same id and content again returns the same job; other content
        raises :class:`~orderly.IdConflictError`), and only then is the call
        retried after a lost answer. ``key`` orders it among the jobs of its
        key; ``delay`` (seconds) or ``run_at`` hold it back; ``max_attempts``
        and ``timeout`` (seconds, per attempt) override the queue's.
        """
        job = NewJob(payload, id, key, delay, run_at, max_attempts, timeout)
        return self._run(_ops.enqueue(queue, job))

    def enqueue_many(self, queue: str, jobs: Iterable[NewJob]) -> list[Job]:
        """Enqueues a batch atomically: consecutive ``seq`` in order, all or nothing.

        Retried after a lost answer only when every job names its ``id``.
        """
        return self._run(_ops.enqueue_many(queue, list(jobs)))

    def job(self, id: str) -> Job:
        """One job (:class:`~orderly.JobNotFoundError` if there is none)."""
        return self._run(_ops.job(id))

    def wait(self, id: str, timeout: Duration | None = None) -> Job:
        """Waits until the job finished, or ``timeout`` (seconds; ``None``:
        no limit) passed, and returns it as it then is (check ``is_finished``).

        Long polls, each at most :attr:`wait_chunk`, one after the other.
        """
        deadline = None if timeout is None else time.monotonic() + ms(timeout, "timeout") / 1000
        while True:
            left = self.wait_chunk if deadline is None else max(0.0, deadline - time.monotonic())
            chunk_ms = ms(min(left, self.wait_chunk), "timeout")
            job = self._run(_ops.wait(id, chunk_ms))
            if job.is_finished or (deadline is not None and time.monotonic() >= deadline):
                return job

    def jobs(
        self,
        queue: str,
        *,
        state: JobState | str | None = None,
        key: str | None = None,
        after: int | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every job of ``queue`` (of ``state``, with ``seq`` above ``after``)
        in ``seq`` order, fetched a page at a time as the iterator advances.
        With ``key``: that key's line, its unfinished jobs in ``seq`` order."""
        while True:
            page = self._run(_ops.list_jobs(queue, state, after, page_size, key))
            yield from page.jobs
            if page.next_after is None:
                return
            after = page.next_after

    def attempts(self, id: str) -> list[Attempt]:
        """Every attempt of a job, oldest first: start, worker, end, outcome, error."""
        return self._run(_ops.attempts(id))

    def starts(self, queue: str, *, after: int | None = None, page_size: int = 100) -> Iterator[Start]:
        """The queue's start log: every start the server made, in ``start_no``
        order (after ``after``), fetched a page at a time as the iterator advances."""
        while True:
            page = self._run(_ops.list_starts(queue, after, page_size))
            yield from page.starts
            if page.next_after is None:
                return
            after = page.next_after

    def cancel(self, id: str) -> Job:
        """Cancels a waiting job now; a running one is asked to stop (its
        worker sees it at its next heartbeat). Not retried."""
        return self._run(_ops.cancel(id))

    def retry(self, id: str) -> Job:
        """Puts a failed or cancelled job back in line (a new ``seq``). Not retried."""
        return self._run(_ops.retry(id))

    # Queues.

    def queue(self, name: str) -> Queue:
        """A queue's configuration and counts (:class:`~orderly.QueueNotFoundError`
        if it was never configured nor used)."""
        return self._run(_ops.queue(name))

    def queues(self) -> list[Queue]:
        """Every queue, by name."""
        return self._run(_ops.queues())

    def configure(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        lease: Duration | None = None,
        paused: bool | None = None,
        executor: Mapping[str, Any] | _Unset | None = UNSET,
    ) -> Queue:
        """Creates or configures a queue; what is left out keeps its value.

        ``lease`` is in seconds; ``executor=None`` clears a server-side executor.
        """
        return self._run(
            _ops.configure(
                name,
                concurrency=concurrency,
                max_attempts=max_attempts,
                backoff=backoff,
                lease=lease,
                paused=paused,
                executor=executor,
            )
        )

    # The worker protocol (what :class:`orderly.Worker` uses).

    def claim(
        self,
        queue: str,
        worker: str,
        *,
        max: int = 1,
        wait: Duration = 0.0,
        lease: Duration | None = None,
    ) -> list[Lease]:
        """Claims up to ``max`` jobs in ``seq`` order, waiting up to ``wait``
        seconds when none may start. ``lease`` defaults to the queue's. Not retried."""
        return self._run(_ops.claim(queue, worker, max, wait, lease))

    def heartbeat(self, lease: Lease, progress: Any = UNSET) -> Heartbeat:
        """Renews a lease, recording ``progress`` (any JSON) when given."""
        return self._run(_ops.heartbeat(lease, progress))

    def complete(
        self, lease: Lease, result: Any = None, *, claim_next: ClaimNext | None = None
    ) -> ReportResult:
        """Reports success with ``result`` (any JSON)."""
        return self._run(_ops.complete(lease, result, claim_next))

    def fail(
        self,
        lease: Lease,
        error: Any,
        *,
        retry: bool | None = None,
        retry_after: Duration | None = None,
        claim_next: ClaimNext | None = None,
    ) -> ReportResult:
        """Reports a failed attempt: retried with backoff (or after
        ``retry_after`` seconds) while attempts remain, unless ``retry=False``."""
        return self._run(_ops.fail(lease, error, retry, retry_after, claim_next))

    # Events.

    def events(
        self,
        queue: str | None = None,
        job: str | None = None,
        *,
        last_event_id: int | None = None,
        reconnect: bool = True,
    ) -> Iterator[EventItem]:
        """Everything that happens to jobs and queues, as it is committed
        (``GET /v1/events``; README "Events"), read as the iterator advances.

        ``queue`` and ``job`` keep only that queue's or job's events (both:
        both must match; a bad name raises as any call does). Without
        ``last_event_id`` it starts with what happens from now on; with it,
        with the events after that id the server still holds, then live.

        It yields :class:`~orderly.Event` objects and two notices about the
        stream itself: a :class:`~orderly.Gap` when the server could not
        replay every event after the id it was given (the events between
        are lost to you: read the jobs you care about again) and a
        :class:`~orderly.Dropped` when the server ended the stream because
        it was read too slowly.

        When the stream ends (the connection dropped, the server shut down
        or restarted, a ``dropped`` notice) it connects again with
        ``Last-Event-ID`` set to the last event it yielded, so no event the
        server still holds is missed or repeated; pauses between tries grow
        as the client's retries do (at most 5 s). Opening the first stream
        is tried ``retries`` times more after no answer or a 5xx; once a
        stream was open it reconnects until the iterator is closed. With
        ``reconnect=False`` the iterator ends when the stream does (and a
        failure to open it raises). Closing the iterator closes the
        connection. The stream has no read timeout (an idle one gets a
        keep-alive every 15 s); ``timeout`` bounds connecting.
        """
        resume = Resume(queue, job, last_event_id)
        tries = Reconnects(self.settings, reconnect)
        while True:
            streaming = False
            try:
                with self._http.stream(**resume.request_kwargs(self.settings)) as r:
                    if not is_stream(r):
                        r.read()
                        raise open_error(r)
                    tries.open()
                    streaming = True
                    parser = SseParser()
                    for line in r.iter_lines():
                        m = parser.line(line)
                        if m is None:
                            continue
                        item = resume.item(m)
                        yield item
                        if isinstance(item, Dropped):
                            break
            except httpx.TransportError as e:
                if not streaming:
                    if not tries.retry_open(e):
                        raise no_answer(self.settings, e) from e
                    time.sleep(tries.pause())
                    continue
            except OrderlyError as e:
                if streaming or not tries.retry_open(e):
                    raise
                time.sleep(tries.pause())
                continue
            if not reconnect:
                return
            time.sleep(tries.pause())

    # The rest.

    def health(self) -> Health:
        """``/healthz``: whether the server is up and its storage works."""
        try:
            r = self._http.get("healthz")
        except httpx.TransportError as e:
            raise transport_error(_ops.raw("GET", "/healthz", None, UNSET), e, self.settings) from e
        return _health(r)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = UNSET,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Sends one request of the API as it is (for routes this client does not
        wrap yet) and returns its JSON answer; errors are raised as for the
        other methods. The body is ``json`` (any JSON value) or ``content``
        (bytes sent as they are, as JSON). Sent once."""
        return self._run(_ops.raw(method, path, params, json, content), headers)


def _health(r: httpx.Response) -> Health:
    if r.status_code not in (200, 503):
        raise OrderlyError(f"/healthz answered HTTP {r.status_code}: {r.text[:200]!r}")
    try:
        body = r.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    status = body.get("status")
    reason = body.get("reason")
    return Health(
        ok=r.status_code == 200,
        status=status if isinstance(status, str) else ("ok" if r.status_code == 200 else "unhealthy"),
        reason=reason if isinstance(reason, str) else None,
    )
