"""The asyncio client is the sync one, method for method: the same
signatures, and the same answers and errors from the real server."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import replace

import pytest

import orderly
from support import Server, job_json

pytestmark = pytest.mark.anyio

SYNC_ONLY = {"close", "__enter__", "__exit__"}
ASYNC_ONLY = {"aclose", "__aenter__", "__aexit__"}
DUNDERS = SYNC_ONLY | ASYNC_ONLY


def _public(cls: type) -> dict[str, object]:
    return {
        n: m
        for n, m in vars(cls).items()
        if callable(m)
        and (not n.startswith("_") or n in {"__enter__", "__exit__", "__aenter__", "__aexit__"})
    }


def test_same_methods_with_the_same_signatures():
    sync, aio = _public(orderly.Client), _public(orderly.AsyncClient)
    assert set(sync) - SYNC_ONLY == set(aio) - ASYNC_ONLY
    for name in set(sync) - SYNC_ONLY:
        s, a = inspect.signature(sync[name]), inspect.signature(aio[name])  # type: ignore[arg-type]
        returns_a = str(a.return_annotation).replace("AsyncIterator", "Iterator")
        assert str(s.return_annotation) == returns_a, name
        assert list(s.parameters.values()) == list(a.parameters.values()), name
        if name not in {"jobs", "starts", "events"}:
            assert inspect.iscoroutinefunction(aio[name]), name
    assert inspect.isasyncgenfunction(orderly.AsyncClient.jobs)
    assert inspect.isasyncgenfunction(orderly.AsyncClient.starts)
    assert inspect.isasyncgenfunction(orderly.AsyncClient.events)
    assert orderly.AsyncClient.wait_chunk == orderly.Client.wait_chunk


async def test_the_same_operations_give_the_same_answers(start_server):
    sync_srv, async_srv = start_server(), start_server()

    def run_sync() -> list[object]:
        with orderly.Client(sync_srv.url) as c:
            out: list[object] = [c.health().ok]
            out.append(job_json(c.enqueue("q", {"n": 1}, id="a", key="k", max_attempts=2, timeout=1)))
            out.append(job_json(c.enqueue("q", {"n": 1}, id="a", key="k", max_attempts=2, timeout=1)))
            out.append(
                [job_json(j) for j in c.enqueue_many("q", [orderly.NewJob(i, id=f"b{i}") for i in range(3)])]
            )
            out.append(job_json(c.job("b1")))
            out.append([j.id for j in c.jobs("q", page_size=2)])
            out.append(job_json(c.cancel("b2")))
            out.append(job_json(c.retry("b2")))
            out.append(c.configure("q", concurrency=2, lease=2).raw)
            (lease,) = c.claim("q", "w", max=1)
            beat = c.heartbeat(lease, {"p": 1})
            out.append((0 < beat.lease_ms <= 1000, beat.cancel_requested))  # capped by timeout
            out.append(job_json(c.complete(lease, {"r": 1}, claim_next=orderly.ClaimNext("w")).job))
            (nxt,) = c.claim("q", "w")
            out.append(job_json(c.fail(nxt, "bad", retry=False).job))
            out.append(job_json(c.wait("a", timeout=1)))
            out.append([(s.job_id, s.attempt, s.worker) for s in c.starts("q", page_size=1)])
            out.append([(a.attempt, a.outcome) for a in c.attempts(nxt.job.id)])
            out.append([q.raw for q in c.queues()])
            out.append(c.queue("q").raw)
            out.append(c.request("GET", "/v1/jobs/b0")["state"])
            out.append(_error(lambda: c.job("nope")))
            out.append(_error(lambda: c.enqueue("q", 2, id="a")))
            out.append(_error(lambda: c.heartbeat(replace(nxt, token="x"))))
            return out

    async def run_async() -> list[object]:
        async with orderly.AsyncClient(async_srv.url) as c:
            out: list[object] = [(await c.health()).ok]
            out.append(job_json(await c.enqueue("q", {"n": 1}, id="a", key="k", max_attempts=2, timeout=1)))
            out.append(job_json(await c.enqueue("q", {"n": 1}, id="a", key="k", max_attempts=2, timeout=1)))
            batch = await c.enqueue_many("q", [orderly.NewJob(i, id=f"b{i}") for i in range(3)])
            out.append([job_json(j) for j in batch])
            out.append(job_json(await c.job("b1")))
            out.append([j.id async for j in c.jobs("q", page_size=2)])
            out.append(job_json(await c.cancel("b2")))
            out.append(job_json(await c.retry("b2")))
            out.append((await c.configure("q", concurrency=2, lease=2)).raw)
            (lease,) = await c.claim("q", "w", max=1)
            beat = await c.heartbeat(lease, {"p": 1})
            out.append((0 < beat.lease_ms <= 1000, beat.cancel_requested))  # capped by timeout
            out.append(job_json((await c.complete(lease, {"r": 1}, claim_next=orderly.ClaimNext("w"))).job))
            (nxt,) = await c.claim("q", "w")
            out.append(job_json((await c.fail(nxt, "bad", retry=False)).job))
            out.append(job_json(await c.wait("a", timeout=1)))
            out.append([(s.job_id, s.attempt, s.worker) async for s in c.starts("q", page_size=1)])
            out.append([(a.attempt, a.outcome) for a in await c.attempts(nxt.job.id)])
            out.append([q.raw for q in await c.queues()])
            out.append((await c.queue("q")).raw)
            out.append((await c.request("GET", "/v1/jobs/b0"))["state"])
            out.append(await _aerror(c.job("nope")))
            out.append(await _aerror(c.enqueue("q", 2, id="a")))
            out.append(await _aerror(c.heartbeat(replace(nxt, token="x"))))
            return out

    sync_out = await asyncio.to_thread(run_sync)
    async_out = await run_async()
    assert len(sync_out) == len(async_out)
    for i, (s, a) in enumerate(zip(sync_out, async_out, strict=True)):
        assert s == a, f"step {i}: sync {s!r} != async {a!r}"
    # The steps really did something: the errors are the expected ones.
    assert sync_out[-3:] == [
        ("JobNotFoundError", 404),
        ("IdConflictError", 409),
        ("StaleLeaseError", 409),
    ]


def _error(f) -> tuple[str, int]:
    try:
        f()
    except orderly.ApiError as e:
        return type(e).__name__, e.status
    raise AssertionError("no error")


async def _aerror(aw) -> tuple[str, int]:
    try:
        await aw
    except orderly.ApiError as e:
        return type(e).__name__, e.status
    raise AssertionError("no error")


async def test_async_wait_returns_when_another_task_completes(server: Server):
    async with orderly.AsyncClient(server.url) as c:
        await c.enqueue("q", 1, id="w")

        async def finish() -> None:
            (lease,) = await c.claim("q", "w", wait=5)
            await c.complete(lease, "done")

        waiter = asyncio.ensure_future(c.wait("w", timeout=10))
        await finish()
        job = await waiter
        assert job.state == orderly.JobState.SUCCEEDED
        assert job.result == "done"


async def test_async_client_finds_the_server_from_the_environment(server: Server, monkeypatch):
    monkeypatch.setenv("ORDERLY_SERVER", server.url)
    async with orderly.AsyncClient() as c:
        assert c.url == server.url
        assert (await c.enqueue("q", 1)).queue == "q"
