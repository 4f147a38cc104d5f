"""Contract section 3, idempotent enqueue, and the client's retries: an
enqueue that names its ``id`` is sent again after a lost answer or a 5xx
and still makes one job; one without an ``id`` is never sent twice.

Faults come from a real TCP proxy in front of the real server (see
``proxy.py``): the lost answer is a request the server really committed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import orderly
from proxy import FlakyProxy
from support import Server


@pytest.fixture
def flaky(server: Server) -> Iterator[FlakyProxy]:
    p = FlakyProxy(server.url)
    yield p
    p.close()


def test_same_id_and_content_returns_the_same_job(client: orderly.Client):
    first = client.enqueue("mail", {"to": "a@b.c"}, id="welcome-1", key="acct-1")
    again = client.enqueue("mail", {"to": "a@b.c"}, id="welcome-1", key="acct-1")
    assert again.seq == first.seq
    assert again.enqueued_at == first.enqueued_at
    assert [j.id for j in client.jobs("mail")] == ["welcome-1"]


@pytest.mark.parametrize(
    ("queue", "payload", "key"),
    [
        ("mail", {"to": "x@y.z"}, "acct-1"),
        ("mail", {"to": "a@b.c"}, "acct-2"),
        ("other", {"to": "a@b.c"}, "acct-1"),
    ],
    ids=["other payload", "other key", "other queue"],
)
def test_same_id_with_other_content_is_a_conflict(client: orderly.Client, queue, payload, key):
    client.enqueue("mail", {"to": "a@b.c"}, id="welcome-1", key="acct-1")
    with pytest.raises(orderly.IdConflictError) as e:
        client.enqueue(queue, payload, id="welcome-1", key=key)
    assert e.value.status == 409
    assert "welcome-1" in e.value.message
    assert client.job("welcome-1").payload == {"to": "a@b.c"}


def test_enqueue_with_id_is_sent_again_after_a_lost_answer(flaky: FlakyProxy, client: orderly.Client):
    flaky.faults = ["drop", "drop"]
    with orderly.Client(flaky.url, retry_backoff=0.01) as c:
        job = c.enqueue("mail", {"n": 1}, id="order-7")
    assert [what for _, path, what in flaky.requests if "/jobs" in path] == ["drop", "drop", "pass"]
    assert job.id == "order-7"
    assert job.state == orderly.JobState.QUEUED
    # The first try was committed; the replays returned that same job: one job.
    assert [(j.id, j.seq) for j in client.jobs("mail")] == [("order-7", job.seq)]


def test_enqueue_with_id_is_sent_again_after_a_5xx(flaky: FlakyProxy, client: orderly.Client):
    flaky.faults = ["bad_gateway"]
    with orderly.Client(flaky.url, retry_backoff=0.01) as c:
        job = c.enqueue("mail", {"n": 1}, id="order-8")
    assert [what for _, _, what in flaky.requests] == ["bad_gateway", "pass"]
    assert [j.id for j in client.jobs("mail")] == [job.id]


def test_batch_with_every_id_is_sent_again_after_a_lost_answer(flaky: FlakyProxy, client: orderly.Client):
    flaky.faults = ["drop"]
    batch = [orderly.NewJob({"n": i}, id=f"b-{i}") for i in range(3)]
    with orderly.Client(flaky.url, retry_backoff=0.01) as c:
        jobs = c.enqueue_many("mail", batch)
    assert [what for _, _, what in flaky.requests] == ["drop", "pass"]
    assert [j.id for j in jobs] == ["b-0", "b-1", "b-2"]
    assert [j.id for j in client.jobs("mail")] == ["b-0", "b-1", "b-2"]


def test_enqueue_without_id_is_not_sent_twice(flaky: FlakyProxy, client: orderly.Client):
    flaky.faults = ["drop"]
    with orderly.Client(flaky.url, retry_backoff=0.01) as c, pytest.raises(orderly.TransportError) as e:
        c.enqueue("mail", {"n": 1})
    assert "may or may not have been applied" in e.value.message
    assert len(flaky.requests) == 1
    # Why: the server did commit it; sending it again would have made two.
    assert len(list(client.jobs("mail"))) == 1


def test_enqueue_without_id_is_not_sent_again_after_a_5xx(flaky: FlakyProxy, client: orderly.Client):
    flaky.faults = ["bad_gateway"]
    with orderly.Client(flaky.url) as c, pytest.raises(orderly.UnexpectedResponseError) as e:
        c.enqueue("mail", {"n": 1})
    assert e.value.status == 502
    assert "Bad Gateway" in e.value.body
    assert len(flaky.requests) == 1
    assert list(client.jobs("mail")) == []


def test_retries_give_up_after_the_configured_count(flaky: FlakyProxy):
    flaky.faults = ["drop"] * 10
    with orderly.Client(flaky.url, retries=2, retry_backoff=0.01) as c, pytest.raises(orderly.TransportError):
        c.enqueue("mail", {"n": 1}, id="order-9")
    assert len(flaky.requests) == 3


def test_reads_are_sent_again_after_a_lost_answer(flaky: FlakyProxy, client: orderly.Client):
    client.enqueue("mail", {"n": 1}, id="order-10")
    flaky.faults = ["drop"]
    with orderly.Client(flaky.url, retry_backoff=0.01) as c:
        assert c.job("order-10").id == "order-10"
    assert len(flaky.requests) == 2


def test_cancel_is_not_sent_twice(flaky: FlakyProxy, client: orderly.Client):
    client.enqueue("mail", {"n": 1}, id="order-11")
    flaky.faults = ["drop"]
    with orderly.Client(flaky.url) as c, pytest.raises(orderly.TransportError):
        c.cancel("order-11")
    assert len(flaky.requests) == 1
    assert client.job("order-11").state == orderly.JobState.CANCELLED


def test_a_server_that_is_down_is_a_transport_error(start_server):
    # A port that was just served and is now closed: nothing listens there.
    srv = start_server()
    url = srv.url
    srv.stop()
    with orderly.Client(url, retries=1, retry_backoff=0.01) as c, pytest.raises(orderly.TransportError) as e:
        c.job("x")
    assert url in e.value.message
    assert isinstance(e.value.__cause__, Exception)
