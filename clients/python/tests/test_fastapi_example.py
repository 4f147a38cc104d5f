"""The FastAPI example, run as it would be, both ways: the Orderly server, the
app under uvicorn and either its worker or, with a webhook executor on the
queue, the server calling the app's ``POST /jobs/run``: real processes,
driven over real HTTP as the seed's client drove it. Every poll of
``/status`` is first-in, first-out, and the requests complete 1, 2, 3."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import orderly
from support import PACKAGE, SEED_IDS, Server, check_fifo, clean_env, tail, wait_until

EXAMPLES = PACKAGE / "examples"
AS_STATES = {"in_queue": "queued", "in_progress": "running", "complete": "succeeded"}


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts ``uvicorn fastapi_app:app`` on a free port for a server, with
    extra environment variables; returns its URL. Stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(server: Server, **env: str) -> str:
        log = tmp_path / f"uvicorn{len(procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", "0"],
                cwd=EXAMPLES,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(ORDERLY_SERVER=server.url, **env),
            )
        procs.append(proc)

        def url() -> str | None:
            assert proc.poll() is None, f"uvicorn exited:\n{tail(log)}"
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", tail(log))
            return m.group(1) if m else None

        return wait_until(url, 30, "uvicorn is up", lambda: tail(log))

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def app(server: Server, start_app: Callable[..., str]) -> str:
    """The app for ``server``, without the webhook route's secret."""
    return start_app(server)


def post_seed_requests(http: httpx.Client) -> None:
    """The seed client's three requests, each answered ``202 in_queue``."""
    for uid in SEED_IDS:
        r = http.post(f"/request/{uid}")
        assert r.status_code == 202, r.text
        assert r.json() == {"uid": uid, "status": "in_queue"}


def completion_order(http: httpx.Client, every: float, diag: Callable[[], str]) -> list[str]:
    """Polls ``/status`` every ``every`` seconds until the three requests are
    complete, checking at every poll that it lists them in acceptance order
    and first-in, first-out; the order they were seen complete."""
    done_order: list[str] = []
    polls = 0
    deadline = time.monotonic() + 60
    while len(done_order) < 3:
        assert time.monotonic() < deadline, f"not done in 60 s: {done_order}\n{diag()}"
        polls += 1
        status = http.get("/status").json()
        assert list(status) == list(SEED_IDS), status  # listed in acceptance order
        assert all(s["uid"] == uid for uid, s in status.items()), status
        check_fifo([AS_STATES[s["status"]] for s in status.values()], polls)
        done = [uid for uid, s in status.items() if s["status"] == "complete"]
        done_order += [uid for uid in done if uid not in done_order]
        time.sleep(every)
    return done_order


def check_results(c: orderly.Client) -> None:
    """Each request's job succeeded with ``process_request``'s result, first
    time, and they started in order."""
    jobs = [c.job(uid) for uid in SEED_IDS]
    assert [j.result for j in jobs] == [{"uid": uid, "processed": True} for uid in SEED_IDS]
    assert [j.attempt for j in jobs] == [1, 1, 1]
    start_nos = [j.start_no for j in jobs]
    assert start_nos == sorted(start_nos), start_nos


def test_requests_are_processed_first_in_first_out(server: Server, app: str, spawn_worker):
    worker = spawn_worker(
        server, "fastapi_worker:worker", "--max-jobs", "3", cwd=EXAMPLES, WORK_SECONDS="0.4"
    )
    with httpx.Client(base_url=app, timeout=10) as http:
        post_seed_requests(http)
        done_order = completion_order(http, 0.05, worker.log)
        assert done_order == list(SEED_IDS)
        assert worker.wait_exit(30) == 0, worker.log()
        detail = http.get(f"/status/{SEED_IDS[2]}").json()
        assert detail == {"uid": SEED_IDS[2], "status": "complete", "position": None, "attempt": 1}
        assert http.get("/status/no-such-request").status_code == 404
        # The same request again is the same job: nothing is queued twice.
        assert http.post(f"/request/{SEED_IDS[0]}").json() == {"uid": SEED_IDS[0], "status": "complete"}
        assert http.post("/request/not a uid").status_code == 422

    with orderly.Client(server.url) as c:
        check_results(c)
        assert len(list(c.jobs("requests"))) == 3


def test_the_server_calls_the_app_in_order_with_a_webhook_executor(
    server: Server, start_app: Callable[..., str]
):
    secret = secrets.token_hex(32)
    app = start_app(server, ORDERLY_WEBHOOK_SECRET=secret, WORK_SECONDS="0.4")
    url = f"{app}/jobs/run"
    with orderly.Client(server.url) as c, httpx.Client(base_url=app, timeout=10) as http:
        queue = c.configure("requests", executor={"type": "webhook", "url": url, "secret": secret})
        assert queue.executor == {"type": "webhook", "url": url, "secret_set": True}  # never shown back
        post_seed_requests(http)
        assert completion_order(http, 0.25, server.log) == list(SEED_IDS)
        check_results(c)

        # The route runs only what the server signed with the secret.
        forged = {"id": "forged", "queue": "requests", "key": None, "seq": 9, "attempt": 1}
        body = json.dumps({**forged, "payload": {"uid": "x"}}).encode()

        def run(body: bytes, signature: str | None) -> httpx.Response:
            headers = {"Content-Type": "application/json"}
            if signature is not None:
                headers[orderly.SIGNATURE_HEADER] = signature
            return http.post("/jobs/run", content=body, headers=headers)

        now = int(time.time())
        sign = orderly.signature_header
        refused = {
            "no signature": run(body, None),
            "another secret": run(body, sign("not-" + secret, body)),
            "another body": run(body.replace(b'"x"', b'"y"'), sign(secret, body)),
            "replayed 10 minutes later": run(body, sign(secret, body, timestamp=now - 600)),
            "from 10 minutes ahead": run(body, sign(secret, body, timestamp=now + 600)),
            "malformed": run(body, "t=soon,v1=" + "0" * 64),
        }
        assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 401), {
            k: r.text for k, r in refused.items()
        }
        # Signed with the secret, the same request is taken (a job this route
        # cannot run is answered 410, which fails it without retries).
        signed = run(body, sign(secret, body))
        assert (signed.status_code, signed.json()) == (200, {"uid": "x", "processed": True})
        other = body.replace(b'"queue": "requests"', b'"queue": "emails"')
        assert run(other, sign(secret, other)).status_code == 410

        failing = c.enqueue("requests", {"not": "a request"}, id="not-a-request", max_attempts=5)
        failing = c.wait(failing.id, timeout=30)
        assert (failing.state, failing.attempt) == (orderly.JobState.FAILED, 1), failing
        assert "410" in json.dumps(failing.error), failing.error
        assert [j.id for j in c.jobs("requests")] == [*SEED_IDS, "not-a-request"]
