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
import inspect
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._convert import Duration, ms
from ._runner import (
    ClaimRefusedError,
    Handler,
    Run,
    RunSettings,
    Summary,
    heartbeat_interval,
)
from .async_client import AsyncClient
from .client import Client

__all__ = ["ClaimRefusedError", "Summary", "Worker", "default_name", "heartbeat_interval"]

log = logging.getLogger("orderly.worker")

F = TypeVar("F", bound=Callable[..., Any])


def default_name() -> str:
    """``host-pid-random``: unique per process, as the Rust worker's."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


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
        if not 0.1 <= poll <= 300:
            raise ValueError(f"poll must be 0.1 to 300 seconds (the server's cap), got {poll}")
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
        self._handlers: dict[str, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: Run | None = None
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
        self._handlers[queue] = Handler(queue, fn, is_async, takes_ctx)

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
        settings = RunSettings(self.name, self.lease, self.poll, self.shutdown_grace, self.cancel_grace)
        run = Run(settings, client, n, max_jobs)
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


def _install_signals(loop: asyncio.AbstractEventLoop, run: Run) -> list[int]:
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
