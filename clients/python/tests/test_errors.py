"""One exception class per API error ``code``, each raised from a real
server's answer (one test per class the server can be made to produce),
and the class table checked against the server's own table of codes."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import orderly
from disks import failing_disk, tmpfs
from orderly import errors
from support import REPO, Server, raw_http


@pytest.fixture
def limited(start_server) -> Server:
    """A server with a 1 KiB payload limit and a 1 s body timeout."""
    return start_server("--max-payload-bytes", "1024", "--body-timeout", "1s")


@pytest.fixture
def guarded(start_server) -> Server:
    """A server that requires a token."""
    return start_server("--token", "s3cret")


def _lease(c: orderly.Client) -> orderly.Lease:
    c.enqueue("q", 1, id="leased")
    (lease,) = c.claim("q", "w")
    return lease


def _finished(c: orderly.Client) -> str:
    lease = _lease(c)
    c.complete(lease, None)
    return lease.job.id


# (class, how to make the server answer with it, a word its message names)
CASES: list[tuple[type[orderly.ApiError], Callable[[orderly.Client], object], str]] = [
    (
        orderly.InvalidJsonError,
        lambda c: c.request("POST", "/v1/queues/q/jobs", content=b"{nope"),
        "request body",
    ),
    (
        orderly.InvalidRequestError,
        lambda c: c.request("POST", "/v1/queues/q/jobs", json={"payload": 1, "colour": "red"}),
        "colour",
    ),
    (orderly.InvalidValueError, lambda c: c.enqueue("q", 1, max_attempts=0), "max_attempts"),
    (orderly.InvalidQueueNameError, lambda c: c.enqueue("no spaces", 1), "queue"),
    (orderly.InvalidJobIdError, lambda c: c.enqueue("q", 1, id="no spaces"), "id"),
    (orderly.InvalidKeyError, lambda c: c.enqueue("q", 1, key="k" * 201), "key"),
    # Executors landed: this was `not_supported`, which no server path answers any more.
    (
        orderly.InvalidValueError,
        lambda c: c.configure("q", executor={"webhook": "http://x"}),
        "executor.type",
    ),
    (
        orderly.InvalidValueError,
        lambda c: c.configure("q", executor={"type": "webhook", "url": "http://x", "secret": ""}),
        "executor.secret",
    ),
    (orderly.JobNotFoundError, lambda c: c.job("nope"), "nope"),
    (orderly.QueueNotFoundError, lambda c: c.queue("never-used"), "never-used"),
    (orderly.NotFoundError, lambda c: c.request("GET", "/v1/nothing-here"), "/v1/nothing-here"),
    (orderly.MethodNotAllowedError, lambda c: c.request("DELETE", "/v1/jobs/x"), "DELETE"),
    (
        orderly.IdConflictError,
        lambda c: (c.enqueue("q", 1, id="dup"), c.enqueue("q", 2, id="dup")),
        "dup",
    ),
    (orderly.StaleLeaseError, lambda c: c.heartbeat(replace(_lease(c), token="not-the-token")), "lease"),
    (orderly.InvalidStateError, lambda c: c.cancel(_finished(c)), "succeeded"),
]


@pytest.mark.parametrize(("cls", "make", "word"), CASES, ids=[c[0].__name__ for c in CASES])
def test_server_error_is_raised_as_its_class(client: orderly.Client, cls, make, word):
    with pytest.raises(cls) as e:
        make(client)
    err = e.value
    assert type(err) is cls
    assert isinstance(err, orderly.ApiError)
    assert isinstance(err, orderly.OrderlyError)
    assert err.code == cls.code_name
    assert 400 <= err.status < 500
    assert word.lower() in err.message.lower(), err.message
    assert err.message in str(err)
    assert err.code in str(err)


def test_payload_too_large(limited: Server):
    with orderly.Client(limited.url) as c, pytest.raises(orderly.PayloadTooLargeError) as e:
        c.enqueue("q", "x" * 2000)
    assert e.value.status == 413
    assert "1024" in e.value.message  # the bound is named


def test_body_too_large(limited: Server):
    # Past the payload limit plus the route's 64 KiB margin, the body itself is refused.
    with orderly.Client(limited.url) as c, pytest.raises(orderly.BodyTooLargeError) as e:
        c.enqueue("q", "x" * 200_000)
    assert e.value.status == 413
    assert "bytes" in e.value.message


def test_body_timeout(limited: Server):
    # Headers promise 100 bytes, 10 arrive: the server answers 408 after its 1 s.
    head = b"POST /v1/queues/q/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    status, body = raw_http(limited.url, head + b"content-length: 100\r\n\r\n" + b'{"payload"')
    err = errors.from_response(status, body)
    assert isinstance(err, orderly.BodyTimeoutError), err
    assert err.status == 408
    assert "1s" in err.message


def test_malformed_body(server: Server):
    head = b"POST /v1/queues/q/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    status, body = raw_http(server.url, head + b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    err = errors.from_response(status, body)
    assert isinstance(err, orderly.MalformedBodyError), err
    assert err.status == 400


def test_unauthorized(guarded: Server):
    with orderly.Client(guarded.url) as c, pytest.raises(orderly.UnauthorizedError) as e:
        c.queues()
    assert e.value.status == 401
    assert "token" in e.value.message
    with orderly.Client(guarded.url, token="wrong") as c, pytest.raises(orderly.UnauthorizedError) as e:
        c.queues()
    assert "wrong" in e.value.message
    with orderly.Client(guarded.url, token="s3cret") as c:
        assert c.queues() == []


def test_forbidden_origin(server: Server):
    with (
        orderly.Client(server.url, headers={"Origin": "https://evil.example"}) as c,
        pytest.raises(orderly.ForbiddenOriginError) as e,
    ):
        c.enqueue("q", 1)
    assert e.value.status == 403
    assert "evil.example" in e.value.message
    with orderly.Client(server.url) as c:
        assert list(c.jobs("q")) == []


def test_storage_full(tmp_path: Path):
    with tmpfs(tmp_path / "tiny", "4m") as disk:
        (disk / "filler").write_bytes(b"\0" * (2 * 1024 * 1024))
        server = Server(disk / "data", log_path=tmp_path / "server.log")
        try:
            with orderly.Client(server.url) as c:
                accepted, err = _enqueue_until_refused(c, {"blob": "x" * 20_000}, 1000)
                assert isinstance(err, orderly.StorageFullError), err
                assert err.status == 507
                assert err.is_server_error
                assert accepted > 0
                assert c.health().ok  # reads and health keep working
                assert c.queue("q").counts.queued == accepted
        finally:
            server.stop()


def test_storage_failed(tmp_path: Path):
    with failing_disk(tmp_path / "ioerr") as (fs, backing):
        server = Server(fs / "data", log_path=tmp_path / "server.log")
        try:
            with orderly.Client(server.url, retries=0) as c:
                first = c.enqueue("q", 1)
                _fill(backing)
                _, err = _enqueue_until_refused(c, {"noise": "abcdefghijklmnopqrstuvwxyz" * 800}, 50)
                assert isinstance(err, orderly.StorageFailedError), err
                assert err.status == 503
                health = c.health()
                assert not health.ok
                assert health.status == "unhealthy"
                assert c.job(first.id).seq == first.seq  # reads still answer
        finally:
            server.stop()


def _enqueue_until_refused(c: orderly.Client, payload: object, most: int) -> tuple[int, Exception | None]:
    """Enqueues ``payload`` until refused: (how many were accepted, the refusal)."""
    for accepted in range(most):
        try:
            c.enqueue("q", payload)
        except orderly.OrderlyError as e:
            return accepted, e
    return most, None


def _fill(directory: Path) -> None:
    """Fills the filesystem of ``directory`` (a full tmpfs is the fault)."""
    with open(directory / "fill", "wb") as f:
        try:
            for _ in range(64):
                f.write(b"\0" * (1024 * 1024))
        except OSError:
            pass


def test_corrupt_data(server: Server, client: orderly.Client):
    client.enqueue("q", {"ok": True}, id="damaged")
    with sqlite3.connect(server.data_dir / "orderly.db") as db:
        db.execute("UPDATE jobs SET payload = '{not json' WHERE id = 'damaged'")
    with orderly.Client(server.url, retries=0) as c, pytest.raises(orderly.CorruptDataError) as e:
        c.job("damaged")
    assert e.value.status == 500
    assert "payload" in e.value.message


def _server_codes() -> list[str]:
    """The codes of ``orderly_proto::ErrorCode`` (the server's one table)."""
    src = (REPO / "crates" / "orderly-proto" / "src" / "errors.rs").read_text()
    return re.findall(r'ErrorCode::\w+ => "(\w+)"', src)


def test_every_server_code_has_its_class():
    codes = [c for c in _server_codes() if c != "unknown"]
    assert len(codes) >= 20, codes  # the table was found
    assert set(codes) == set(errors.known_codes()), set(codes) ^ set(errors.known_codes())
    for code in codes:
        cls = errors.error_class(code)
        assert cls.code_name == code
        assert cls.__name__.endswith("Error")
        assert getattr(orderly, cls.__name__) is cls  # exported


def test_a_code_from_a_newer_server_is_an_api_error():
    err = errors.from_response(418, b'{"error": {"code": "teapot", "message": "short and stout"}}')
    assert type(err) is orderly.ApiError
    assert err.code == "teapot"
    assert err.message == "short and stout"


def test_an_answer_without_the_error_shape_is_unexpected():
    err = errors.from_response(502, b"<html>bad gateway</html>")
    assert isinstance(err, orderly.UnexpectedResponseError)
    assert err.status == 502
