"""The receiving end of a webhook executor (contract section 6,
``docs/webhooks.md``): a queue configured with ``{"type": "webhook", "url":
..., "secret": ...}`` has the server POST each job to that URL, signed with
an ``Orderly-Signature`` header. These functions need no web framework::

    body = await request.body()                  # the raw bytes, before any parsing
    if not orderly.verify_signature(SECRET, request.headers.get(orderly.SIGNATURE_HEADER), body):
        return Response(status_code=401)
    job = orderly.webhook_job(body)              # id, queue, key, seq, attempt, payload

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``;
fields this version does not know are ignored. Verify the raw body bytes, as
received, before parsing them: a body parsed and serialized again no longer
matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._convert import Reader
from .errors import OrderlyError

SIGNATURE_HEADER = "Orderly-Signature"
"""The header that carries the signature."""

DEFAULT_TOLERANCE = 300.0
"""How far (in seconds, either way) a signature's timestamp may be from the
receiver's clock: 5 minutes, as ``docs/webhooks.md`` asks."""

_MAX_TIMESTAMP_DIGITS = 20
"""More digits than any Unix time in seconds needs (``int`` refuses very long strings)."""


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
    if not key:
        # An empty key is one anybody can sign with: never accept it.
        raise ValueError("secret is empty: give the executor's secret (e.g. from ORDERLY_WEBHOOK_SECRET)")
    return key


def _body(body: bytes) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        f"body must be the raw request bytes, not {type(body).__name__} "
        "(read it before parsing, e.g. `await request.body()`)"
    )


def _mac(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _fields(header: str) -> dict[str, str]:
    """``name=value`` fields separated by ``,``; the first of a name counts."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, value)
    return fields


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """True when ``header`` (the ``Orderly-Signature`` value; ``None`` when the
    request had none) signs ``body`` (the raw request bytes) with ``secret``
    and its timestamp is within ``tolerance`` seconds of ``now`` (Unix
    seconds, default the current time), in either direction.

    False for a missing, malformed, forged or replayed signature; the
    signature is compared in constant time. Fields other than ``t`` and
    ``v1`` are ignored. Raises ``ValueError`` for an empty secret or a
    negative tolerance and ``TypeError`` for a body that is not bytes: those
    are the caller's mistakes, not the request's.
    """
    key = _key(secret)
    raw = _body(body)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(f"tolerance must be a number of seconds, not {type(tolerance).__name__}")
    if math.isnan(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be 0 seconds or more: got {tolerance!r}")
    if header is None:
        return False
    if not isinstance(header, str):
        raise TypeError(f"header must be str (the Orderly-Signature value), not {type(header).__name__}")
    fields = _fields(header)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        return False
    if not received or not received.isascii():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(_mac(key, timestamp, raw), received)


def signature_header(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Orderly-Signature`` value the server would send with ``body`` at
    ``timestamp`` (Unix seconds, default now): for testing a receiver."""
    if timestamp is None:
        timestamp = int(time.time())
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp must be whole Unix seconds, 0 or more: got {timestamp!r}")
    t = str(timestamp)
    return f"t={t},v1={_mac(_key(secret), t, _body(body))}"


@dataclass(frozen=True)
class WebhookJob:
    """One job as a webhook executor POSTs it (``docs/webhooks.md``)."""

    id: str
    """The job's id (deliveries are at least once: be idempotent on it)."""
    queue: str
    """Its queue."""
    key: str | None
    """Its ordering key, ``None`` without one."""
    seq: int
    """Its place in the queue's order."""
    attempt: int
    """This attempt's number, 1 on the first run."""
    payload: Any
    """The job's payload, as enqueued."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The object as the server sent it."""

    @classmethod
    def from_json(cls, obj: Any) -> WebhookJob:
        """Reads the request body's parsed JSON object."""
        r = Reader(obj, "webhook job")
        return cls(
            id=r.string("id"),
            queue=r.string("queue"),
            key=r.opt_string("key"),
            seq=r.integer("seq"),
            attempt=r.integer("attempt"),
            payload=r.any("payload"),
            raw=r.obj,
        )


def webhook_job(body: bytes | str) -> WebhookJob:
    """The job a webhook request carries, from its body (raw bytes or text).

    Raises :class:`orderly.OrderlyError` naming the problem when the body is
    not such a job (answer ``400`` then). Verify the signature first.
    """
    if not isinstance(body, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"body must be the request's bytes or text, not {type(body).__name__}")
    try:
        obj = json.loads(bytes(body) if isinstance(body, memoryview) else body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OrderlyError(f"webhook job: the body is not JSON: {e}") from None
    return WebhookJob.from_json(obj)
