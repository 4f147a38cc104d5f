"""The seed's FastAPI app, with Orderly instead of BackgroundTasks.

``POST /request/{uid}`` queues the work and answers ``202 {"uid", "status":
"in_queue"}`` once Orderly has it on disk; ``GET /status`` shows every
request's status in the order they were accepted; the work itself runs in
``fastapi_worker.py``, a worker beside the app, one request at a time and
first in, first out (the queue's default concurrency is 1).

Run it (the Orderly server first, then the app and its worker)::

    orderly serve                                   # http://127.0.0.1:7771
    uvicorn fastapi_app:app                         # the API, on :8000
    python -m orderly worker fastapi_worker:worker  # the work

Both find the server through ``ORDERLY_SERVER`` (and ``ORDERLY_TOKEN``).
The request's ``uid`` is the job's id, so posting the same request twice
queues it once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

import orderly

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
