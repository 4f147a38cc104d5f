"""``Client.events`` / ``AsyncClient.events`` against the real server: the
kinds of one job's life, the filters, resuming with ``Last-Event-ID``,
reconnecting by itself after a dropped stream and across a server restart
(a ``gap``), and the SSE parsing rules.

Reading a stream blocks without a read timeout, so every sync read here is
bounded by :func:`deadline` (an interval timer) and every async one by
``anyio.fail_after``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from types import FrameType

import anyio
import pytest

import orderly
from orderly.events import SseParser
from support import Server


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fails the test if the block takes longer than ``seconds`` (a blocked read too)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"the event stream gave nothing for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def take(it: Iterator[orderly.EventItem], n: int, seconds: float = 30) -> list[orderly.EventItem]:
    """The next ``n`` items of ``it``, within ``seconds``."""
    with deadline(seconds):
        return list(islice(it, n))


def events_only(items: list[orderly.EventItem]) -> list[orderly.Event]:
    assert all(isinstance(i, orderly.Event) for i in items), items
    return [i for i in items if isinstance(i, orderly.Event)]


def job_ids(items: list[orderly.EventItem]) -> list[str | None]:
    return [e.job.id if e.job else None for e in events_only(items)]


def run_one_job(c: orderly.Client, queue: str, id: str) -> None:
    """Enqueues, claims, reports progress and completes job ``id``."""
    c.enqueue(queue, {"n": 1}, id=id, key="k")
    (lease,) = c.claim(queue, "w1")
    assert lease.job.id == id
    c.heartbeat(lease, {"done": 1, "total": 2})
    c.complete(lease, {"ok": True})


def test_one_jobs_life_under_a_job_filter(client: orderly.Client):
    client.configure("q", concurrency=1)
    run_one_job(client, "q", "j1")
    client.enqueue("q", None, id="other")
    it = client.events(job="j1", last_event_id=0)
    try:
        got = events_only(take(it, 4))
    finally:
        it.close()
    assert [e.kind for e in got] == ["enqueued", "started", "progress", "succeeded"]
    assert all(e.job is not None and (e.job.id, e.job.key) == ("j1", "k") for e in got)
    assert [e.job.state if e.job else None for e in got] == [
        orderly.JobState.QUEUED,
        orderly.JobState.RUNNING,
        orderly.JobState.RUNNING,
        orderly.JobState.SUCCEEDED,
    ]
    assert {e.queue for e in got} == {"q"}
    assert [e.progress for e in got] == [None, None, {"done": 1, "total": 2}, None]
    assert [e.id for e in got] == sorted(e.id for e in got)
    assert len({e.id for e in got}) == 4
    assert [e.at for e in got] == sorted(e.at for e in got)
    assert got[0].job is not None
    assert got[0].job.seq == client.job("j1").seq
    assert got[0].raw["kind"] == "enqueued"


def test_a_queue_filter_leaves_other_queues_out(client: orderly.Client):
    client.enqueue("a", 1, id="a1")
    client.enqueue("b", 1, id="b1")
    client.configure("b", concurrency=2)
    client.enqueue("b", 1, id="b2")
    client.enqueue("a", 1, id="a2")
    it = client.events(queue="a", last_event_id=0)
    try:
        got = events_only(take(it, 2))
    finally:
        it.close()
    assert [(e.kind, e.queue) for e in got] == [("enqueued", "a"), ("enqueued", "a")]
    assert job_ids(got) == ["a1", "a2"]


def test_resuming_from_an_id_gives_exactly_the_later_events(client: orderly.Client):
    for i in range(4):
        client.enqueue("r", i, id=f"r{i}")
    it = client.events(queue="r", last_event_id=0)
    first = events_only(take(it, 2))
    it.close()  # the connection is closed; what follows comes on a new one
    assert job_ids(first) == ["r0", "r1"]
    it = client.events(queue="r", last_event_id=first[-1].id)
    try:
        later = take(it, 2)
        assert job_ids(later) == ["r2", "r3"]
        client.enqueue("r", 4, id="r4")
        assert job_ids(take(it, 1)) == ["r4"]  # then live, nothing repeated
    finally:
        it.close()


def test_a_slow_reader_is_dropped_and_resumes_without_missing_or_repeating(start_server):
    server = start_server("--events-buffer", "1")
    with orderly.Client(server.url) as c:
        c.enqueue("s", 0, id="s0")
        it = c.events(queue="s", last_event_id=0)
        try:
            assert job_ids(take(it, 1)) == ["s0"]
            # One batch publishes all its events at once: far more than the
            # one this subscriber may fall behind.
            c.enqueue_many("s", [orderly.NewJob(i, id=f"s{i}") for i in range(1, 41)])
            items: list[orderly.EventItem] = []
            with deadline(30):
                while sum(isinstance(i, orderly.Event) for i in items) < 40:
                    items.append(next(it))
        finally:
            it.close()
    dropped = [i for i in items if isinstance(i, orderly.Dropped)]
    assert len(dropped) == 1, items
    assert "behind" in dropped[0].reason
    assert dropped[0].last_id is not None
    # After the notice it reconnected from the last event it had: every
    # job's event once, in order.
    events = [i for i in items if isinstance(i, orderly.Event)]
    assert job_ids(events) == [f"s{i}" for i in range(1, 41)]


def test_it_reconnects_across_a_server_restart_and_passes_the_gap_on(start_server, tmp_path):
    first = start_server()
    port = first.url.rsplit(":", 1)[1]
    c = orderly.Client(first.url, retries=0, retry_backoff=0.05)  # reconnecting is not retrying
    again: Server | None = None
    try:
        for i in range(3):
            c.enqueue("q", i, id=f"j{i}")
        it = c.events(queue="q", last_event_id=0)
        once = c.events(queue="q", last_event_id=0, reconnect=False)
        before = events_only(take(it, 3))
        assert job_ids(before) == ["j0", "j1", "j2"]
        assert job_ids(take(once, 3)) == ["j0", "j1", "j2"]
        first.proc.kill()
        first.proc.wait(10)
        restarted: list[Server] = []
        failed: list[BaseException] = []

        def restart() -> None:
            # Meanwhile the iterator finds the stream gone and its
            # connections refused until the new process listens.
            try:
                time.sleep(0.5)  # down a while (the test holds without it, it tests less)
                s = Server(first.data_dir, listen=f"127.0.0.1:{port}", log_path=tmp_path / "again.log")
                restarted.append(s)
                with orderly.Client(s.url) as other:
                    other.enqueue("q", 3, id="j3")
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                failed.append(e)

        t = threading.Thread(target=restart)
        t.start()
        try:
            gap, after = take(it, 2)
        finally:
            t.join(60)
            again = restarted[0] if restarted else None
        assert not failed, failed
        assert isinstance(gap, orderly.Gap), gap
        assert (gap.from_id, gap.oldest, gap.reason) == (before[-1].id, 1, "unknown")
        assert isinstance(after, orderly.Event)
        assert (after.id, after.kind, after.job and after.job.id) == (1, "enqueued", "j3")
        c.enqueue("q", 4, id="j4")
        assert job_ids(take(it, 1)) == ["j4"]
        it.close()
        assert take(once, 5) == []  # reconnect=False: it ended with the stream
    finally:
        c.close()
        if again is not None:
            again.stop()


def test_a_bad_filter_is_the_servers_400(client: orderly.Client):
    with pytest.raises(orderly.InvalidQueueNameError) as e:
        take(client.events(queue="not a queue/"), 1)
    assert e.value.status == 400
    with pytest.raises(ValueError, match="last_event_id"):
        client.events(last_event_id=-1).__next__()


def test_no_server_raises_after_the_retries():
    c = orderly.Client("http://127.0.0.1:9", retries=1, retry_backoff=0.01)
    with c, pytest.raises(orderly.TransportError, match="/v1/events"):
        take(c.events(), 1)


@pytest.mark.anyio
async def test_async_events_are_the_same(server: Server):
    async with orderly.AsyncClient(server.url) as c:
        await c.enqueue("q", 1, id="a0", key="k")
        (lease,) = await c.claim("q", "w")
        await c.complete(lease, None)
        await c.enqueue("q", 2, id="a1")
        it = c.events(job="a0", last_event_id=0)
        with anyio.fail_after(30):
            got = [await it.__anext__() for _ in range(3)]
        await it.aclose()
        assert [e.kind for e in events_only(got)] == ["enqueued", "started", "succeeded"]
        it = c.events(queue="q", last_event_id=events_only(got)[-1].id)
        with anyio.fail_after(30):
            later = await it.__anext__()
            assert isinstance(later, orderly.Event)
            assert later.job is not None
            assert (later.kind, later.job.id) == ("enqueued", "a1")
        await it.aclose()
        with pytest.raises(orderly.InvalidQueueNameError):
            with anyio.fail_after(30):
                await c.events(queue="not a queue/").__anext__()


@pytest.mark.anyio
async def test_async_events_reconnect_after_a_dropped_notice(start_server):
    server = start_server("--events-buffer", "1")
    async with orderly.AsyncClient(server.url) as c:
        await c.enqueue("s", 0, id="s0")
        it = c.events(queue="s", last_event_id=0)
        items: list[orderly.EventItem] = []
        try:
            with anyio.fail_after(30):
                items.append(await it.__anext__())
                await c.enqueue_many("s", [orderly.NewJob(i, id=f"s{i}") for i in range(1, 31)])
                while sum(isinstance(i, orderly.Event) for i in items) < 31:
                    items.append(await it.__anext__())
        finally:
            await it.aclose()
    assert sum(isinstance(i, orderly.Dropped) for i in items) == 1, items
    events = [i for i in items if isinstance(i, orderly.Event)]
    assert job_ids(events) == [f"s{i}" for i in range(31)]


def test_sse_parsing_follows_the_spec():
    p = SseParser()
    lines = [
        ": a comment",
        "id: 7",
        "event: started",
        'data: {"a":',
        "data:1}",
        "retry: 10",
        "",
        "",  # a blank line with nothing gathered dispatches nothing
        "data",
        "",
    ]
    out = [m for m in (p.line(x) for x in lines) if m is not None]
    assert [(m.event, m.data, m.id) for m in out] == [
        ("started", '{"a":\n1}', "7"),
        ("message", "", "7"),  # the id stays; the event type does not
    ]
