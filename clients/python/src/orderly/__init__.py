"""Orderly for Python: a client, an asyncio client and a pull worker for the
Orderly job server, which runs jobs in the order it accepted them.

>>> from orderly import Client
>>> with Client("http://127.0.0.1:7771") as orderly:          # doctest: +SKIP
...     job = orderly.enqueue("emails", {"to": "a@b.c"}, id="welcome-42")
...     orderly.wait(job.id, timeout=30).state
<JobState.SUCCEEDED: 'succeeded'>

The layout: ``client`` and ``async_client`` (the two clients, the same
methods), ``_ops`` (each API call once, without I/O), ``_http`` (what both
clients do around httpx), ``models`` (what the server sends; ``_convert``
reads it), ``errors`` (one exception class per API error code),
``worker``, ``_runner`` and ``context`` (the pull worker, its loops, and
what a handler sees), ``cli`` (``python -m orderly worker``), ``webhook``
(the receiving end of a webhook executor: ``verify_signature``,
``webhook_job``).
"""

from ._convert import Duration
from ._ops import UNSET
from ._version import __version__
from .async_client import AsyncClient
from .audit import Attempt, Start
from .client import Client
from .context import CancelReason, Fail, JobCancelled, JobContext, Retry
from .errors import (
    ApiError,
    BodyTimeoutError,
    BodyTooLargeError,
    CorruptDataError,
    ForbiddenOriginError,
    IdConflictError,
    InternalError,
    InvalidJobIdError,
    InvalidJsonError,
    InvalidKeyError,
    InvalidQueueNameError,
    InvalidRequestError,
    InvalidStateError,
    InvalidValueError,
    JobNotFoundError,
    MalformedBodyError,
    MethodNotAllowedError,
    NotFoundError,
    NotSupportedError,
    OrderlyError,
    PayloadTooLargeError,
    QueueNotFoundError,
    ReadOnlyError,
    ShuttingDownError,
    StaleLeaseError,
    StorageFailedError,
    StorageFullError,
    StorageUnavailableError,
    TransportError,
    UnauthorizedError,
    UnexpectedResponseError,
)
from .events import Dropped, Event, EventItem, EventJob, Gap
from .models import (
    Backoff,
    ClaimNext,
    Counts,
    Eta,
    Health,
    Heartbeat,
    Job,
    JobState,
    Lease,
    NewJob,
    Queue,
    ReportResult,
    WaitingOn,
)
from .webhook import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    WebhookJob,
    signature_header,
    verify_signature,
    webhook_job,
)
from .worker import ClaimRefusedError, Summary, Worker

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "UNSET",
    "ApiError",
    "AsyncClient",
    "Attempt",
    "Backoff",
    "BodyTimeoutError",
    "BodyTooLargeError",
    "CancelReason",
    "ClaimNext",
    "ClaimRefusedError",
    "Client",
    "CorruptDataError",
    "Counts",
    "Dropped",
    "Duration",
    "Eta",
    "Event",
    "EventItem",
    "EventJob",
    "Fail",
    "ForbiddenOriginError",
    "Gap",
    "Health",
    "Heartbeat",
    "IdConflictError",
    "InternalError",
    "InvalidJobIdError",
    "InvalidJsonError",
    "InvalidKeyError",
    "InvalidQueueNameError",
    "InvalidRequestError",
    "InvalidStateError",
    "InvalidValueError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobNotFoundError",
    "JobState",
    "Lease",
    "MalformedBodyError",
    "MethodNotAllowedError",
    "NewJob",
    "NotFoundError",
    "NotSupportedError",
    "OrderlyError",
    "PayloadTooLargeError",
    "Queue",
    "QueueNotFoundError",
    "ReadOnlyError",
    "ReportResult",
    "Retry",
    "ShuttingDownError",
    "StaleLeaseError",
    "Start",
    "StorageFailedError",
    "StorageFullError",
    "StorageUnavailableError",
    "Summary",
    "TransportError",
    "UnauthorizedError",
    "UnexpectedResponseError",
    "WaitingOn",
    "WebhookJob",
    "Worker",
    "__version__",
    "signature_header",
    "verify_signature",
    "webhook_job",
]
