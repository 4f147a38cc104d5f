"""The seed's FastAPI app, with Orderly instead of BackgroundTasks.

``POST /request/{uid}`` queues the work and answers ``202 {"uid", "status":
"in_queue"}`` once Orderly has it on disk; ``GET /status`` shows every
request's status in the order they were accepted. The work itself,
``process_request`` in ``request_work.py``, runs one request at a time and
first in, first out (the queue's default concurrency is 1), in one of two
ways.

**A pull worker** beside the app, ``fastapi_worker.py``, asks the server for
work (the Orderly server first, then the app and its worker)::

    orderly serve                                   # http://127.0.0.1:7771
    uvicorn fastapi_app:app                         # the API, on :8000
    python -m orderly worker fastapi_worker:worker  # the work

**The server calls the app**: with a webhook executor on the queue, the
server POSTs each job, in order, to this app's ``POST /jobs/run``, which
checks the request's signature with the secret in
``ORDERLY_WEBHOOK_SECRET``, runs ``process_request`` and answers with its
result (the job's result). No worker process::

    export ORDERLY_WEBHOOK_SECRET="$(openssl rand -hex 32)"
    orderly serve
    uvicorn fastapi_app:app
    orderly queue set requests --webhook http://127.0.0.1:8000/jobs/run --secret "$ORDERLY_WEBHOOK_SECRET"

or, from Python, ``client.configure("requests", executor={"type": "webhook",
"url": "http://127.0.0.1:8000/jobs/run", "secret": secret})``;
``orderly queue set requests --no-executor`` goes back to pull workers. A
request whose signature does not verify (forged, altered, or replayed more
than 5 minutes later) is answered ``401`` and nothing runs; an error in
``process_request`` is a ``500``, which the server retries as the queue's
retry policy says; a job this route cannot run is a ``410``, which fails it
for good. Delivery is at least once, like a worker's: the same job may come
again after a failed attempt (``Orderly-Attempt`` tells which).

Both find the server through ``ORDERLY_SERVER`` (and ``ORDERLY_TOKEN``).
The request's ``uid`` is the job's id, so posting the same request twice
queues it once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

import orderly
from request_work import process_request

QUEUE = "requests"
"""The Orderly queue the requests wait in."""

STATUS = {
    orderly.JobState.SCHEDULED: "in_queue",
    orderly.JobState.QUEUED: "in_queue",
    orderly.JobState.RUNNING: "in_progress",
    orderly.JobState.SUCCEEDED: "complete",
    orderly.JobState.FAILED: "failed",
    orderly.JobState.CANCELLED: "cancelled",
}
"""The app's words for Orderly's job states."""

WEBHOOK_SECRET = os.environ.get("ORDERLY_WEBHOOK_SECRET", "")
"""The secret the queue's webhook executor signs with ("": ``/jobs/run`` is off)."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client for the app's lifetime: its connections are reused.
    async with orderly.AsyncClient() as client:
        app.state.orderly = client
        yield


app = FastAPI(title="requests, in order", lifespan=lifespan)


def jobs(request: Request) -> orderly.AsyncClient:
    """The app's Orderly client (a dependency)."""
    client: orderly.AsyncClient = request.app.state.orderly
    return client


Jobs = Annotated[orderly.AsyncClient, Depends(jobs)]


@app.post("/request/{uid}", status_code=202)
async def create_request(uid: str, client: Jobs) -> dict[str, str]:
    """Queues the work for ``uid``; answered once it is durably accepted."""
    try:
        job = await client.enqueue(QUEUE, {"uid": uid}, id=uid)
    except orderly.InvalidJobIdError as e:
        raise HTTPException(status_code=422, detail=e.message) from e
    return {"uid": uid, "status": STATUS[job.state]}


@app.get("/status")
async def status(client: Jobs) -> dict[str, dict[str, str]]:
    """Every request and its status, in the order the requests were accepted."""
    return {job.id: {"uid": job.id, "status": STATUS[job.state]} async for job in client.jobs(QUEUE)}


@app.get("/status/{uid}")
async def request_status(uid: str, client: Jobs) -> dict[str, object]:
    """One request: its status, how many wait ahead of it, its attempts."""
    try:
        job = await client.job(uid)
    except (orderly.JobNotFoundError, orderly.InvalidJobIdError) as e:
        raise HTTPException(status_code=404, detail=f"no request {uid!r}") from e
    return {"uid": uid, "status": STATUS[job.state], "position": job.position, "attempt": job.attempt}


@app.post("/jobs/run")
async def run_job(request: Request) -> dict[str, object]:
    """Runs one job the server's webhook executor sent, answering its result."""
    if not WEBHOOK_SECRET:
        raise HTTPException(status_code=503, detail="set ORDERLY_WEBHOOK_SECRET to take jobs here")
    body = await request.body()  # the raw bytes: the signature covers them as sent
    if not orderly.verify_signature(WEBHOOK_SECRET, request.headers.get(orderly.SIGNATURE_HEADER), body):
        raise HTTPException(status_code=401, detail="missing, invalid or expired Orderly-Signature")
    try:
        job = orderly.webhook_job(body)
    except orderly.OrderlyError as e:
        raise HTTPException(status_code=400, detail=str(e)) from e
    uid = job.payload.get("uid") if isinstance(job.payload, dict) else None
    if job.queue != QUEUE or not isinstance(uid, str):
        # Trying again would not help: 410 fails the job without retries.
        raise HTTPException(status_code=410, detail=f"not a request of queue {QUEUE!r}: {job.payload!r:.200}")
    # The work blocks (it is plain, synchronous Python): run it off the event loop.
    return await run_in_threadpool(process_request, uid)
