"""The work of the seed app's background task, as an Orderly worker that runs
beside ``fastapi_app.py``::

    python -m orderly worker fastapi_worker:worker    # or: python fastapi_worker.py

``process_request`` is plain Python and knows nothing of Orderly: the worker
calls it for each job of the queue, in the order the requests were accepted.
A killed worker loses nothing (the job runs again, in its place, once its
lease expires), and SIGTERM lets the running request finish first.
"""

from __future__ import annotations

import os
import time

import orderly
from fastapi_app import QUEUE

WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "2"))
"""How long the seed's work takes."""


def process_request(uid: str) -> dict[str, object]:
    """The seed's work for one request."""
    time.sleep(WORK_SECONDS)
    return {"uid": uid, "processed": True}


worker = orderly.Worker()


@worker.handler(QUEUE)
def handle(payload: dict[str, str]) -> dict[str, object]:
    return process_request(payload["uid"])


if __name__ == "__main__":
    worker.run()
