"""The Worker in this process against the real server: what handlers return
and raise becomes the job's result or error, Retry/Fail choose what follows,
progress and concurrency, cancellation, a lost lease, and graceful stops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import orderly
from proxy import FlakyProxy
from support import Server, wait_until


class Running:
    """A worker's ``run`` in a thread; ``result()`` joins it (bounded)."""

    def __init__(self, worker: orderly.Worker, **kwargs: Any) -> None:
        self.worker = worker
        self.summary: orderly.Summary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _main(self, **kwargs: Any) -> None:
        try:
            self.summary = self.worker.run(install_signal_handlers=False, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def result(self, timeout: float = 30) -> orderly.Summary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the worker did not stop within {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


@pytest.fixture
def running() -> Iterator[list[Running]]:
    runs: list[Running] = []
    yield runs
    for r in runs:
        r.worker.stop()
        r.thread.join(10)


def start(runs: list[Running], worker: orderly.Worker, **kwargs: Any) -> Running:
    r = Running(worker, **kwargs)
    runs.append(r)
    return r


def test_results_and_exceptions_become_the_job_outcome(server: Server, client: orderly.Client, running):
    w = orderly.Worker(server.url, poll=1)

    @w.handler("q")
    def work(payload: dict[str, Any]) -> Any:
        kind = payload["kind"]
        if kind == "boom":
            raise ValueError("it went boom")
        if kind == "fail":
            raise orderly.Fail("no point retrying", details={"why": "bad input"})
        if kind == "object":
            return object()
        return {"echo": payload}

    client.enqueue("q", {"kind": "ok"}, id="ok")
    client.enqueue("q", {"kind": "boom"}, id="boom", max_attempts=1)
    client.enqueue("q", {"kind": "fail"}, id="fail", max_attempts=5)
    client.enqueue("q", {"kind": "object"}, id="object")
    summary = start(running, w, max_jobs=4).result()
    assert (summary.started, summary.succeeded, summary.failed, summary.unreported) == (4, 1, 3, 0)

    ok = client.job("ok")
    assert ok.state == orderly.JobState.SUCCEEDED
    assert ok.result == {"echo": {"kind": "ok"}}
    assert ok.worker == w.name

    boom = client.job("boom")
    assert boom.state == orderly.JobState.FAILED
    assert boom.error["type"] == "ValueError"
    assert boom.error["message"] == "it went boom"
    assert "Traceback" in boom.error["traceback"]
    assert 'raise ValueError("it went boom")' in boom.error["traceback"]

    fail = client.job("fail")
    assert fail.state == orderly.JobState.FAILED  # for good, with 4 attempts left
    assert fail.attempt == 1
    assert fail.error["type"] == "orderly.context.Fail"
    assert fail.error["message"] == "no point retrying"
    assert fail.error["details"] == {"why": "bad input"}

    obj = client.job("object")
    assert obj.state == orderly.JobState.FAILED
    assert "not JSON-serialisable" in obj.error["message"]


def test_retry_after_runs_the_job_again_as_attempt_2(server: Server, client: orderly.Client, running):
    w = orderly.Worker(server.url, poll=5)
    attempts: list[int] = []

    @w.handler("q")
    def work(payload: Any, ctx: orderly.JobContext) -> Any:
        attempts.append(ctx.job.attempt)
        if ctx.job.attempt == 1:
            raise orderly.Retry("not yet", after=0.05)
        return "second time lucky"

    client.enqueue("q", None, id="r")
    summary = start(running, w, max_jobs=2).result()
    assert attempts == [1, 2]
    assert (summary.succeeded, summary.failed) == (1, 1)
    job = client.job("r")
    assert job.state == orderly.JobState.SUCCEEDED
    assert job.attempt == 2
    assert job.result == "second time lucky"
    assert job.error is None  # a succeeded job has no error


def test_async_handler_reports_progress_while_it_runs(server: Server, client: orderly.Client, running):
    w = orderly.Worker(
        server.url, poll=1, lease=3
    )  # heartbeats every second (a tighter lease can expire on a loaded machine)
    go_on = threading.Event()

    @w.handler("q")
    async def work(payload: Any, ctx: orderly.JobContext) -> Any:
        ctx.progress({"step": 1, "of": 2})
        for _ in range(500):
            if go_on.is_set():
                return {"steps": 2}
            await asyncio.sleep(0.02)
        raise TimeoutError("the test never let it go on")

    client.enqueue("q", None, id="p")
    run = start(running, w, max_jobs=1)
    wait_until(lambda: client.job("p").progress == {"step": 1, "of": 2}, 20, "progress shown on the job")
    assert client.job("p").state == orderly.JobState.RUNNING
    go_on.set()
    assert run.result().succeeded == 1
    job = client.job("p")
    assert job.result == {"steps": 2}
    assert job.progress == {"step": 1, "of": 2}


def test_concurrency_runs_jobs_at_once_and_starts_them_in_seq_order(
    server: Server, client: orderly.Client, running
):
    client.configure("q", concurrency=3)
    jobs = client.enqueue_many("q", [orderly.NewJob(i, id=f"j{i}") for i in range(9)])
    together = threading.Barrier(3, timeout=20)
    lock = threading.Lock()
    in_flight, most = 0, 0

    w = orderly.Worker(server.url, poll=1)

    @w.handler("q")
    def work(n: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        if n < 3:
            together.wait()  # the first three can only pass if they run at once
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return n

    summary = start(running, w, concurrency=3, max_jobs=9).result()
    assert summary.succeeded == 9
    assert most == 3
    done = [client.job(j.id) for j in jobs]
    assert [j.result for j in done] == list(range(9))
    start_nos = [j.start_no for j in done]
    assert start_nos == sorted(start_nos), start_nos  # started in seq order


def test_cancel_reaches_an_async_handler_that_does_not_look(server: Server, client: orderly.Client, running):
    w = orderly.Worker(server.url, poll=1, lease=3, cancel_grace=0.1)
    seen: list[str] = []

    @w.handler("q")
    async def work(payload: Any, ctx: orderly.JobContext) -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(f"CancelledError {ctx.cancel_reason}")
            raise
        return "never"

    client.enqueue("q", None, id="c")
    run = start(running, w, max_jobs=1)
    wait_until(lambda: client.job("c").state == orderly.JobState.RUNNING, 20, "the job runs")
    client.cancel("c")
    summary = run.result()
    assert seen == ["CancelledError requested"]
    assert summary.failed == 1
    job = client.job("c")
    assert job.state == orderly.JobState.CANCELLED
    assert job.error["type"] == "JobCancelled"


def test_stop_lets_the_running_job_finish_and_claims_no_more(server: Server, client: orderly.Client, running):
    started = threading.Event()
    w = orderly.Worker(server.url, poll=1)

    @w.handler("q")
    def work(payload: Any) -> Any:
        started.set()
        time.sleep(0.3)
        return "finished"

    client.enqueue_many("q", [orderly.NewJob(1, id="first"), orderly.NewJob(2, id="second")])
    run = start(running, w)
    assert started.wait(20)
    w.stop()
    summary = run.result()
    assert (summary.started, summary.succeeded, summary.abandoned) == (1, 1, 0)
    assert client.job("first").state == orderly.JobState.SUCCEEDED
    assert client.job("second").state == orderly.JobState.QUEUED


def test_past_the_shutdown_grace_a_job_is_given_up_and_reruns_in_place(
    server: Server, client: orderly.Client, running
):
    client.configure("q", lease=1)
    reasons: list[str | None] = []
    w = orderly.Worker(server.url, poll=1, shutdown_grace=0.2)

    @w.handler("q")
    def work(payload: Any, ctx: orderly.JobContext) -> Any:
        if ctx.job.id == "first" and ctx.job.attempt == 1:
            ctx.wait_cancelled(30)
            reasons.append(ctx.cancel_reason)
        return ctx.job.attempt

    client.enqueue_many("q", [orderly.NewJob(1, id="first"), orderly.NewJob(2, id="second")])
    run = start(running, w)
    wait_until(lambda: client.job("first").state == orderly.JobState.RUNNING, 20, "the job runs")
    w.stop()
    summary = run.result()
    assert (summary.abandoned, summary.succeeded, summary.failed) == (1, 0, 0)
    wait_until(lambda: reasons, 10, "the handler saw why it was stopped")
    assert reasons == ["shutdown"]
    assert client.job("first").state == orderly.JobState.RUNNING  # not reported

    again = orderly.Worker(server.url, poll=5)
    again.add_handler("q", work)
    assert start(running, again, max_jobs=2).result().succeeded == 2
    first, second = client.job("first"), client.job("second")
    assert (first.attempt, first.result) == (2, 2)
    assert first.start_no < second.start_no  # in its place, before the later job


def test_a_lost_lease_stops_the_handler_and_reports_nothing(server: Server, client: orderly.Client, running):
    client.configure("q", lease=0.3)
    proxy = FlakyProxy(server.url)
    reasons: list[str | None] = []
    with orderly.Client(proxy.url, retries=0) as via_proxy:
        w = orderly.Worker(via_proxy, poll=1)

        @w.handler("q")
        def work(payload: Any, ctx: orderly.JobContext) -> Any:
            ctx.wait_cancelled(30)
            reasons.append(ctx.cancel_reason)
            return "too late"

        client.enqueue("q", None, id="l")
        run = start(running, w, max_jobs=1)
        try:
            wait_until(lambda: client.job("l").state == orderly.JobState.RUNNING, 20, "the job runs")
            # The network fails: heartbeats stop arriving, the lease expires.
            proxy.faults = ["bad_gateway"] * 100_000
            (mine,) = wait_until(
                lambda: client.claim("q", "thief", wait=1, lease=30), 20, "the lease expired"
            )
            assert mine.job.attempt == 2
            proxy.faults = []
            summary = run.result()
        finally:
            proxy.close()
    assert reasons == ["lease_lost"]
    assert (summary.unreported, summary.succeeded, summary.failed) == (1, 0, 0)
    job = client.job("l")
    assert job.state == orderly.JobState.RUNNING
    assert job.worker == "thief"
    client.complete(mine, "mine")
    assert client.job("l").result == "mine"


def test_handlers_are_checked_when_registered():
    w = orderly.Worker("http://127.0.0.1:1")
    with pytest.raises(TypeError, match="payload"):
        w.add_handler("q", lambda: None)
    w.add_handler("q", lambda payload: payload)
    with pytest.raises(ValueError, match="already has a handler"):
        w.add_handler("q", lambda payload: payload)
    with pytest.raises(ValueError, match="no handler"):
        w.run(queues=["other"])
    with pytest.raises(ValueError, match="concurrency"):
        orderly.Worker(concurrency=0)


def test_a_refused_claim_stops_the_worker(start_server):
    srv = start_server("--token", "s3cret")
    w = orderly.Worker(srv.url)
    w.add_handler("q", lambda payload: payload)
    with pytest.raises(orderly.ClaimRefusedError, match="unauthorized"):
        w.run(install_signal_handlers=False)
