"""The work of the seed app's background task, as an Orderly worker that runs
beside ``fastapi_app.py``::

    python -m orderly worker fastapi_worker:worker    # or: python fastapi_worker.py

``process_request`` (in ``request_work.py``) is plain Python and knows
nothing of Orderly: the worker calls it for each job of the queue, in the
order the requests were accepted. A killed worker loses nothing (the job
runs again, in its place, once its lease expires), and SIGTERM lets the
running request finish first.

The other way to run the same function is the app's ``POST /jobs/run``
route, which the server calls itself (see ``fastapi_app.py``); a queue uses
one way or the other.
"""

from __future__ import annotations

import orderly
from fastapi_app import QUEUE
from request_work import process_request

worker = orderly.Worker()


@worker.handler(QUEUE)
def handle(payload: dict[str, str]) -> dict[str, object]:
    return process_request(payload["uid"])


if __name__ == "__main__":
    worker.run()
