"""The FastAPI example, run as it would be: the Orderly server, the app under
uvicorn and its worker, three real processes, driven over real HTTP as the
seed's client drove it. Every poll of ``/status`` is first-in, first-out,
and the requests complete 1, 2, 3."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import orderly
from support import PACKAGE, SEED_IDS, Server, check_fifo, clean_env, tail, wait_until

EXAMPLES = PACKAGE / "examples"
AS_STATES = {"in_queue": "queued", "in_progress": "running", "complete": "succeeded"}


@pytest.fixture
def app(server: Server, tmp_path: Path) -> Iterator[str]:
    """``uvicorn fastapi_app:app`` on a free port; its URL."""
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", "0"],
            cwd=EXAMPLES,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(ORDERLY_SERVER=server.url),
        )
        try:

            def url() -> str | None:
                assert proc.poll() is None, f"uvicorn exited:\n{tail(log)}"
                m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", tail(log))
                return m.group(1) if m else None

            yield wait_until(url, 30, "uvicorn is up", lambda: tail(log))
        finally:
            proc.terminate()
            proc.wait(15)


def test_requests_are_processed_first_in_first_out(server: Server, app: str, spawn_worker):
    worker = spawn_worker(
        server, "fastapi_worker:worker", "--max-jobs", "3", cwd=EXAMPLES, WORK_SECONDS="0.4"
    )
    with httpx.Client(base_url=app, timeout=10) as http:
        for uid in SEED_IDS:
            r = http.post(f"/request/{uid}")
            assert r.status_code == 202, r.text
            assert r.json() == {"uid": uid, "status": "in_queue"}

        done_order: list[str] = []
        polls = 0
        deadline = time.monotonic() + 60
        while len(done_order) < 3:
            assert time.monotonic() < deadline, f"not done in 60 s: {done_order}\n{worker.log()}"
            polls += 1
            status = http.get("/status").json()
            assert list(status) == list(SEED_IDS), status  # listed in acceptance order
            assert all(s["uid"] == uid for uid, s in status.items()), status
            check_fifo([AS_STATES[s["status"]] for s in status.values()], polls)
            done_order += [
                uid for uid, s in status.items() if s["status"] == "complete" and uid not in done_order
            ]
            time.sleep(0.05)

        assert done_order == list(SEED_IDS)
        assert worker.wait_exit(30) == 0, worker.log()
        detail = http.get(f"/status/{SEED_IDS[2]}").json()
        assert detail == {"uid": SEED_IDS[2], "status": "complete", "position": None, "attempt": 1}
        assert http.get("/status/no-such-request").status_code == 404
        # The same request again is the same job: nothing is queued twice.
        assert http.post(f"/request/{SEED_IDS[0]}").json() == {"uid": SEED_IDS[0], "status": "complete"}
        assert http.post("/request/not a uid").status_code == 422

    with orderly.Client(server.url) as c:
        jobs = [c.job(uid) for uid in SEED_IDS]
        assert [j.result for j in jobs] == [{"uid": uid, "processed": True} for uid in SEED_IDS]
        start_nos = [j.start_no for j in jobs]
        assert start_nos == sorted(start_nos), start_nos
        assert len(list(c.jobs("requests"))) == 3
