"""The seed's work for one request, plain Python that knows nothing of
Orderly: ``fastapi_worker.py`` (a pull worker) and the ``POST /jobs/run``
route of ``fastapi_app.py`` (called by the server's webhook executor) both
run this same function, one request at a time, in the order the requests
were accepted."""

from __future__ import annotations

import os
import time

WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "2"))
"""How long the seed's work takes."""


def process_request(uid: str) -> dict[str, object]:
    """The seed's work for one request."""
    time.sleep(WORK_SECONDS)
    return {"uid": uid, "processed": True}
