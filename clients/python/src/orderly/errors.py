"""Every error this package raises, all under :class:`OrderlyError`.

- :class:`ApiError` and its subclasses: the server answered with its error
  shape ``{"error": {"code", "message"}}``. There is one subclass per
  ``code`` of the server's table (``orderly_proto::ErrorCode``), named after
  it (``job_not_found`` is :class:`JobNotFoundError`); a code this client
  does not know (a newer server) is raised as :class:`ApiError` itself, with
  its ``code``.
- :class:`TransportError`: no answer (the server is unreachable, the
  connection dropped, a timeout passed). For a call that is not idempotent
  the request may or may not have been applied.
- :class:`UnexpectedResponseError`: an answer that is not the API's (a proxy's
  HTML error page, a body that does not parse).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class OrderlyError(Exception):
    """Base class of every error raised by this package."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """What went wrong, for people."""


class TransportError(OrderlyError):
    """The server could not be reached or gave no answer (the cause is chained)."""


class UnexpectedResponseError(OrderlyError):
    """The server (or something in front of it) answered outside the API's shapes."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status of the answer."""
        self.body = body
        """The answer's body (cut to 2,000 characters)."""


_BY_CODE: dict[str, type[ApiError]] = {}


class ApiError(OrderlyError):
    """The server refused or failed a request and said why.

    ``message`` is the server's message, ``code`` its stable code, ``status``
    the HTTP status.
    """

    code_name: ClassVar[str] = ""
    """The wire ``code`` a subclass stands for."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status of the answer."""
        self.code = code
        """The server's stable snake_case error code."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code_name:
            _BY_CODE[cls.code_name] = cls

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"

    @property
    def is_server_error(self) -> bool:
        """True for a 5xx answer (the server failed, not the request)."""
        return self.status >= 500


class InvalidJsonError(ApiError):
    """The request body is not JSON."""

    code_name = "invalid_json"


class InvalidRequestError(ApiError):
    """The request is JSON of the wrong shape (unknown field, wrong type, missing field)."""

    code_name = "invalid_request"


class InvalidValueError(ApiError):
    """A field's value is out of range or malformed."""

    code_name = "invalid_value"


class InvalidQueueNameError(ApiError):
    """A queue name is not 1-100 bytes of ``[A-Za-z0-9._-]``."""

    code_name = "invalid_queue_name"


class InvalidJobIdError(ApiError):
    """A job id is not 1-200 bytes of ``[A-Za-z0-9._:-]``."""

    code_name = "invalid_job_id"


class InvalidKeyError(ApiError):
    """An ordering key is not 1-200 bytes."""

    code_name = "invalid_key"


class BodyTooLargeError(ApiError):
    """The request body is over the server's limit (named in the message)."""

    code_name = "body_too_large"


class MalformedBodyError(ApiError):
    """The request body's framing is broken (e.g. a bad chunked encoding)."""

    code_name = "malformed_body"


class BodyTimeoutError(ApiError):
    """The request body did not arrive within the server's body timeout."""

    code_name = "body_timeout"


class PayloadTooLargeError(ApiError):
    """A job's payload is over the server's limit (named in the message)."""

    code_name = "payload_too_large"


class UnauthorizedError(ApiError):
    """The bearer token is missing or wrong."""

    code_name = "unauthorized"


class ForbiddenOriginError(ApiError):
    """A browser request from another site's page, to a server without a token."""

    code_name = "forbidden_origin"


class ReadOnlyError(ApiError):
    """The read-only token (``--read-token``) asked to change something."""

    code_name = "read_only"


class NotSupportedError(ApiError):
    """A feature the server's release does not have."""

    code_name = "not_supported"


class JobNotFoundError(ApiError):
    """No job has this id (or it was deleted after the retention)."""

    code_name = "job_not_found"


class QueueNotFoundError(ApiError):
    """No queue of this name was ever configured or used."""

    code_name = "queue_not_found"


class NotFoundError(ApiError):
    """No such route (an older server, or a wrong URL)."""

    code_name = "not_found"


class MethodNotAllowedError(ApiError):
    """The route does not take this method."""

    code_name = "method_not_allowed"


class IdConflictError(ApiError):
    """The job id is taken by a job with another queue, key or payload."""

    code_name = "id_conflict"


class StaleLeaseError(ApiError):
    """A report or heartbeat on a lease that is not the job's current one."""

    code_name = "stale_lease"


class InvalidStateError(ApiError):
    """The job's state forbids the operation (cancel a finished job, retry a queued one)."""

    code_name = "invalid_state"


class StorageFullError(ApiError):
    """The server's disk is full: nothing was written."""

    code_name = "storage_full"


class StorageFailedError(ApiError):
    """The server's storage failed; it stopped accepting writes."""

    code_name = "storage_failed"


class StorageUnavailableError(ApiError):
    """The database is briefly out of reach: nothing was written, retry later."""

    code_name = "storage_unavailable"


class CorruptDataError(ApiError):
    """A stored row could not be read back as written."""

    code_name = "corrupt_data"


class ShuttingDownError(ApiError):
    """The server is shutting down."""

    code_name = "shutting_down"


class InternalError(ApiError):
    """Any other internal server error."""

    code_name = "internal"


def error_class(code: str) -> type[ApiError]:
    """The class raised for ``code`` (:class:`ApiError` for an unknown one)."""
    return _BY_CODE.get(code, ApiError)


def known_codes() -> frozenset[str]:
    """Every code that has its own class."""
    return frozenset(_BY_CODE)


def from_response(status: int, body: bytes | str) -> OrderlyError:
    """The error an answer of ``status`` with ``body`` stands for.

    The API's error shape gives the :class:`ApiError` subclass of its code;
    anything else gives :class:`UnexpectedResponseError`.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        code, message = err.get("code"), err.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return error_class(code)(message, status=status, code=code)
    short = text[:2000]
    return UnexpectedResponseError(
        f"HTTP {status} without an Orderly error body (a proxy in between?): {short[:200]!r}",
        status=status,
        body=short,
    )
