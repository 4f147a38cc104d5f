"""The sync client against the real server: every method, the fields of
contract section 4.1 as models, paging, waiting, and how it finds the server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import orderly
from proxy import FlakyProxy


def test_enqueue_sends_every_field(client: orderly.Client):
    run_at = datetime.now(timezone.utc) + timedelta(hours=1)
    a = client.enqueue("q", {"n": 1}, id="a", key="k1", run_at=run_at, max_attempts=3, timeout=2.5)
    assert (a.id, a.queue, a.key, a.payload) == ("a", "q", "k1", {"n": 1})
    assert a.state == orderly.JobState.SCHEDULED
    assert a.max_attempts == 3
    assert a.timeout_ms == 2500
    assert abs(a.run_at - run_at) < timedelta(milliseconds=1)
    b = client.enqueue("q", None, delay=timedelta(minutes=5))
    assert b.payload is None
    assert b.state == orderly.JobState.SCHEDULED
    assert b.run_at - b.enqueued_at == timedelta(minutes=5)
    c = client.enqueue("q", [1, "two", 3.5])
    assert c.state == orderly.JobState.QUEUED
    assert c.position == 2  # the scheduled jobs ahead wait too
    assert c.attempt == 0
    assert c.seq > b.seq > a.seq
    assert c.started_at is None
    assert c.finished_at is None
    # The answer says why the job waits, as a read right after does; no key,
    # and nothing started yet to estimate from.
    read = client.job(c.id)
    assert c.waiting_on is not None
    assert read.waiting_on is not None
    assert c.waiting_on.reason == read.waiting_on.reason
    assert (c.key_position, c.eta) == (None, None)


def test_python_side_mistakes_are_caught_before_sending(client: orderly.Client):
    with pytest.raises(ValueError, match="naive datetime"):
        client.enqueue("q", 1, run_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="delay must be"):
        client.enqueue("q", 1, delay=-1)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        client.enqueue("q", {"when": datetime.now(timezone.utc)})
    assert client.queues() == []


def test_enqueue_many_is_in_order_with_consecutive_seqs(client: orderly.Client):
    jobs = client.enqueue_many("q", [orderly.NewJob({"n": i}, key="k" if i % 2 else None) for i in range(5)])
    assert [j.payload for j in jobs] == [{"n": i} for i in range(5)]
    seqs = [j.seq for j in jobs]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert [j.key for j in jobs] == [None, "k", None, "k", None]


def test_jobs_iterates_over_every_page(client: orderly.Client):
    client.enqueue_many("q", [orderly.NewJob(i) for i in range(25)])
    first = client.enqueue("q", "cancel me")
    client.cancel(first.id)
    listed = list(client.jobs("q", page_size=10))
    assert [j.payload for j in listed] == [*range(25), "cancel me"]
    assert [j.id for j in client.jobs("q", state="cancelled", page_size=10)] == [first.id]
    assert len(list(client.jobs("q", state=orderly.JobState.QUEUED, page_size=7))) == 25
    after = listed[19].seq
    assert [j.payload for j in client.jobs("q", after=after)] == [*range(20, 25), "cancel me"]
    assert list(client.jobs("never-used")) == []


def test_jobs_of_a_key_is_its_line(client: orderly.Client):
    jobs = client.enqueue_many("q", [orderly.NewJob(i, key="a b/&c" if i % 2 else "other") for i in range(7)])
    gone = client.cancel(jobs[1].id)
    assert gone.state == orderly.JobState.CANCELLED
    line = list(client.jobs("q", key="a b/&c", page_size=2))
    assert [j.payload for j in line] == [3, 5]
    assert all(j.key == "a b/&c" for j in line)
    assert [j.key_position for j in line] == [0, 1]


def test_cancel_and_retry(client: orderly.Client):
    a = client.enqueue("q", 1, id="a")
    b = client.enqueue("q", 2, id="b")
    cancelled = client.cancel("a")
    assert cancelled.state == orderly.JobState.CANCELLED
    assert cancelled.finished_at is not None
    assert client.job("b").position == 0
    again = client.retry("a")
    assert again.state == orderly.JobState.QUEUED
    assert again.seq > b.seq > a.seq
    assert again.position == 1


def test_queues_configure_and_read_back(client: orderly.Client):
    q = client.configure(
        "emails",
        concurrency=4,
        max_attempts=7,
        backoff=orderly.Backoff(initial_ms=500, max_ms=60_000, factor=3.0),
        lease=timedelta(seconds=45),
        paused=True,
    )
    assert (q.name, q.concurrency, q.max_attempts, q.lease_ms, q.paused) == ("emails", 4, 7, 45_000, True)
    assert q.backoff == orderly.Backoff(500, 60_000, 3.0)
    assert q.executor is None
    # Left out: kept.
    q2 = client.configure("emails", paused=False)
    assert (q2.concurrency, q2.lease_ms, q2.paused) == (4, 45_000, False)
    client.enqueue("other", 1)
    assert [x.name for x in client.queues()] == ["emails", "other"]
    other = client.queue("other")
    assert other.concurrency == 1
    assert other.counts == orderly.Counts(
        scheduled=0, queued=1, running=0, succeeded=0, failed=0, cancelled=0
    )


def test_worker_protocol_by_hand(client: orderly.Client):
    client.enqueue_many("q", [orderly.NewJob(i, id=f"j{i}") for i in range(3)])
    (lease,) = client.claim("q", "hand", lease=5)
    assert lease.job.id == "j0"
    assert lease.job.state == orderly.JobState.RUNNING
    assert lease.job.attempt == 1
    assert lease.job.worker == "hand"
    assert lease.lease_ms == 5000
    beat = client.heartbeat(lease, progress={"done": 0.5})
    assert beat.cancel_requested is False
    assert beat.lease_ms == 5000
    assert client.job("j0").progress == {"done": 0.5}
    report = client.complete(lease, {"ok": True}, claim_next=orderly.ClaimNext("hand"))
    assert report.job.state == orderly.JobState.SUCCEEDED
    assert report.job.result == {"ok": True}
    assert report.leases is not None
    assert [x.job.id for x in report.leases] == ["j1"]
    failed = client.fail(report.leases[0], {"message": "nope"}, retry=False)
    assert failed.job.state == orderly.JobState.FAILED
    assert failed.job.error == {"message": "nope"}
    assert failed.leases is None
    (third,) = client.claim("q", "hand", max=5)
    retried = client.fail(third, "later", retry_after=60)
    assert retried.job.state == orderly.JobState.SCHEDULED
    assert third.job.started_at is not None
    assert retried.job.run_at >= third.job.started_at + timedelta(seconds=60)
    assert client.claim("q", "hand", wait=0.1) == []


def test_start_log_and_attempts(client: orderly.Client):
    client.enqueue_many("audit", [orderly.NewJob(i, id=f"a{i}") for i in range(2)])
    (first,) = client.claim("audit", "w1")
    client.fail(first, {"message": "flaky"}, retry_after=0)
    (again,) = client.claim("audit", "w2")
    assert (again.job.id, again.job.attempt) == ("a0", 2), "the retry is next in line"
    client.complete(again, "ok")
    (second,) = client.claim("audit", "w1")
    client.complete(second, "ok")
    # Page by page (one start each), in start_no order: the order the server used.
    starts = list(client.starts("audit", page_size=1))
    assert [(s.job_id, s.attempt, s.worker) for s in starts] == [
        ("a0", 1, "w1"),
        ("a0", 2, "w2"),
        ("a1", 1, "w1"),
    ]
    assert [s.start_no for s in starts] == sorted(s.start_no for s in starts)
    assert [s.seq for s in starts] == [first.job.seq, first.job.seq, second.job.seq]
    assert list(client.starts("audit", after=starts[0].start_no)) == starts[1:]
    assert list(client.starts("no-such-queue")) == []
    attempts = client.attempts("a0")
    assert [(a.attempt, a.worker, a.outcome) for a in attempts] == [
        (1, "w1", "failed"),
        (2, "w2", "succeeded"),
    ]
    assert attempts[0].error == {"message": "flaky"}
    assert attempts[0].ended_at is not None
    assert attempts[0].ended_at <= attempts[1].started_at
    assert [a.start_no for a in attempts] == [starts[0].start_no, starts[1].start_no]
    with pytest.raises(orderly.JobNotFoundError):
        client.attempts("no-such-job")


def test_a_waiting_job_says_why(client: orderly.Client):
    client.enqueue("why", 1, id="later", delay=3600)
    later = client.job("later")
    assert later.waiting_on is not None
    assert later.waiting_on.reason == "scheduled"
    assert later.waiting_on.until == later.run_at
    client.enqueue_many("keyed", [orderly.NewJob(i, id=f"k{i}", key="acct-7") for i in range(3)])
    (running,) = client.claim("keyed", "w")
    assert running.job.id == "k0"
    behind = client.job("k2")
    assert behind.key_position == 2
    assert behind.waiting_on is not None
    assert (behind.waiting_on.reason, behind.waiting_on.job) == ("key", "k0")
    assert client.job("k0").waiting_on is None, "a running job waits for nothing"


def test_wait_returns_once_finished(client: orderly.Client):
    client.enqueue("q", 1, id="w")
    assert client.wait("w", timeout=0.05).state == orderly.JobState.QUEUED
    (lease,) = client.claim("q", "hand")
    client.complete(lease, "done")
    job = client.wait("w", timeout=5)
    assert job.state == orderly.JobState.SUCCEEDED
    assert job.result == "done"


def test_wait_loops_past_the_per_call_cap(server, client: orderly.Client):
    client.enqueue("q", 1, id="w")
    proxy = FlakyProxy(server.url)
    try:
        with orderly.Client(proxy.url) as c:
            c.wait_chunk = 0.1
            assert c.wait("w", timeout=0.45).state == orderly.JobState.QUEUED
            # Each call asked for at most wait_chunk, and more than one call
            # covered the timeout (how many more depends on the machine's
            # speed, which a test must not: each call also pays its round trips).
            waits = [p for _, p, _ in proxy.requests if "/wait" in p]
            assert len(waits) >= 2, waits
            assert all(int(p.split("timeout_ms=")[1]) <= 100 for p in waits), waits
    finally:
        proxy.close()


def test_client_finds_the_server_and_token_as_the_cli_does(start_server, monkeypatch):
    srv = start_server("--token", "s3cret")
    monkeypatch.setenv("ORDERLY_SERVER", srv.url)
    monkeypatch.setenv("ORDERLY_TOKEN", "s3cret")
    with orderly.Client() as c:
        assert c.url == srv.url
        assert c.enqueue("q", 1).queue == "q"
    monkeypatch.delenv("ORDERLY_TOKEN")
    with orderly.Client() as c, pytest.raises(orderly.UnauthorizedError):
        c.queues()
    monkeypatch.delenv("ORDERLY_SERVER")
    assert orderly.Client().url == "http://127.0.0.1:7771"


def test_ids_and_names_are_one_path_segment_each(client: orderly.Client):
    # "." and ".." are a valid queue name and job id; URLs would fold them away.
    job = client.enqueue(".", {"n": 1}, id="..")
    assert client.job("..").queue == "."
    assert [j.id for j in client.jobs(".")] == [job.id]
    odd = client.enqueue("q", 1, id="a:b.c-d_e")
    assert client.job("a:b.c-d_e").id == odd.id
    with pytest.raises(orderly.InvalidJobIdError):
        client.job("a/b")


def test_health(client: orderly.Client):
    h = client.health()
    assert h.ok
    assert h.status == "ok"


def test_request_reaches_routes_as_they_are(client: orderly.Client):
    client.enqueue("q", 1, id="r")
    body = client.request("GET", "/v1/jobs/r")
    assert body["id"] == "r"
    assert body["state"] == "queued"
    assert orderly.Job.from_json(body) == client.job("r")
