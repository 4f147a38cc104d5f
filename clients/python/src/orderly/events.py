"""The event stream (``GET /v1/events``) without I/O: its models
(:class:`Event`, and the notices :class:`Gap` and :class:`Dropped`), a
Server-Sent Events parser, and :class:`Resume`, which keeps the id to
resume from. :meth:`orderly.Client.events` and
:meth:`orderly.AsyncClient.events` drive them over httpx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import httpx

from ._convert import Reader
from ._http import Settings
from ._ops import retry_delay
from .errors import OrderlyError, TransportError, UnexpectedResponseError, from_response
from .models import JobState


@dataclass(frozen=True)
class EventJob:
    """The job an event is about, as it is after the change."""

    id: str
    """Job id."""
    seq: int
    """Its ``seq``."""
    key: str | None
    """Its ordering key."""
    state: JobState
    """Its state after the change."""

    @classmethod
    def from_json(cls, obj: Any) -> EventJob:
        """Reads the ``job`` of an event."""
        r = Reader(obj, "event.job")
        state = r.string("state")
        try:
            job_state = JobState(state)
        except ValueError:
            raise OrderlyError(f"event.job.state: unknown state {state!r} from the server") from None
        return cls(id=r.string("id"), seq=r.integer("seq"), key=r.opt_string("key"), state=job_state)


@dataclass(frozen=True)
class Event:
    """Something that happened to a job or a queue (README "Events")."""

    id: int
    """Increases by one with every event of the server process (starts again
    at 1 when the server restarts)."""
    kind: str
    """``enqueued``, ``ready``, ``started``, ``progress``, ``succeeded``,
    ``failed``, ``cancelled``, ``retrying``, ``requeued``, ``retried``,
    ``queue_configured`` or ``scheduled`` (a string: a newer server may add kinds)."""
    at: datetime
    """When it was committed (UTC)."""
    queue: str
    """The queue."""
    job: EventJob | None
    """The job after the change; ``None`` for queue events."""
    progress: Any
    """What the heartbeat carried, on ``progress`` events; ``None`` otherwise."""
    raw: dict[str, Any] = field(repr=False, compare=False)
    """The event's JSON as sent."""

    @classmethod
    def from_json(cls, obj: Any) -> Event:
        """Reads an event's ``data``."""
        r = Reader(obj, "event")
        job = r.any("job")
        return cls(
            id=r.integer("id"),
            kind=r.string("kind"),
            at=r.time("at"),
            queue=r.string("queue"),
            job=None if job is None else EventJob.from_json(job),
            progress=r.any("progress"),
            raw=r.obj,
        )


@dataclass(frozen=True)
class Gap:
    """``event: gap``: the events after ``from_id`` cannot all be replayed;
    the stream goes on from ``oldest``. Those between were lost to this
    reader: read the jobs it cares about again."""

    from_id: int
    """The ``Last-Event-ID`` that was sent (``from`` on the wire)."""
    oldest: int
    """The oldest event the server still holds."""
    reason: str
    """``too_old`` (the server's window moved past ``from_id``) or
    ``unknown`` (``from_id`` is ahead of every event: the server restarted)."""
    raw: dict[str, Any] = field(repr=False, compare=False)
    """The notice's JSON as sent."""

    @classmethod
    def from_json(cls, obj: Any) -> Gap:
        """Reads a ``gap`` notice's ``data``."""
        r = Reader(obj, "gap")
        return cls(
            from_id=r.integer("from"), oldest=r.integer("oldest"), reason=r.string("reason"), raw=r.obj
        )


@dataclass(frozen=True)
class Dropped:
    """``event: dropped``: the server ended this stream because the reader
    fell too far behind. With ``reconnect=True`` the iterator then
    reconnects from ``last_id`` by itself."""

    reason: str
    """Why, in words."""
    last_id: int | None
    """The id of the last event the server sent on the stream."""
    raw: dict[str, Any] = field(repr=False, compare=False)
    """The notice's JSON as sent."""

    @classmethod
    def from_json(cls, obj: Any) -> Dropped:
        """Reads a ``dropped`` notice's ``data``."""
        r = Reader(obj, "dropped")
        return cls(reason=r.string("reason"), last_id=r.opt_integer("last_id"), raw=r.obj)


EventItem: TypeAlias = Event | Gap | Dropped
"""What an event iterator yields: an :class:`Event`, or a notice about the stream."""


@dataclass(frozen=True)
class Message:
    """One dispatched Server-Sent Events message."""

    event: str
    """Its ``event`` field (``message`` when it had none)."""
    data: str
    """Its ``data`` lines joined with ``\\n``."""
    id: str | None
    """The last ``id`` seen on the stream so far (``None``: none yet)."""


class SseParser:
    """Server-Sent Events, line by line (WHATWG HTML, "event stream
    interpretation"): ``id``, ``event`` and ``data`` fields (several ``data``
    lines joined with ``\\n``), comments and other fields ignored, a blank
    line dispatches. Lines come without their end (httpx's ``iter_lines``)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def line(self, line: str) -> Message | None:
        """Takes one line; returns the message a blank line completes."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Message(event=event or "message", data="\n".join(data), id=self._id)


def _json(m: Message) -> Any:
    try:
        return json.loads(m.data)
    except ValueError:
        raise OrderlyError(
            f"event stream: the data of a {m.event!r} message is not JSON: {m.data[:200]!r}"
        ) from None


class Resume:
    """One subscription's request and the id it resumes from: the last
    event seen, moved on by ``gap`` and ``dropped`` notices."""

    def __init__(self, queue: str | None, job: str | None, last_event_id: int | None) -> None:
        for name, v in (("queue", queue), ("job", job)):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name} must be a string or None, not {type(v).__name__}")
        if last_event_id is not None and (
            isinstance(last_event_id, bool) or not isinstance(last_event_id, int) or last_event_id < 0
        ):
            raise ValueError(f"last_event_id must be a whole number, 0 or more, got {last_event_id!r}")
        self.params = {k: v for k, v in (("queue", queue), ("job", job)) if v is not None}
        self.last_id = last_event_id
        """The id sent as ``Last-Event-ID`` on the next connection."""

    def request_kwargs(self, settings: Settings) -> dict[str, Any]:
        """Arguments of ``httpx.Client.stream``: no read timeout (an idle
        stream only gets a keep-alive every 15 s), the others kept."""
        headers: Mapping[str, str] = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.last_id is not None:
            headers = {**headers, "last-event-id": str(self.last_id)}
        return {
            "method": "GET",
            "url": "v1/events",
            "params": self.params,
            "headers": headers,
            "timeout": httpx.Timeout(settings.timeout, read=None),
        }

    def item(self, m: Message) -> EventItem:
        """The model of a message, moving the resume point past it."""
        if m.event == "gap":
            gap = Gap.from_json(_json(m))
            # The stream goes on from `oldest`: resuming later must not ask
            # for the earlier process's ids again.
            self.last_id = max(0, gap.oldest - 1)
            return gap
        if m.event == "dropped":
            dropped = Dropped.from_json(_json(m))
            if dropped.last_id is not None:
                self.last_id = dropped.last_id
            return dropped
        event = Event.from_json(_json(m))
        self.last_id = event.id
        return event


def is_stream(response: httpx.Response) -> bool:
    """Whether the answer is the event stream (else :func:`open_error` says what it is)."""
    kind = response.headers.get("content-type", "")
    return response.status_code == 200 and kind.startswith("text/event-stream")


def open_error(response: httpx.Response) -> OrderlyError:
    """The error an answer that is not the stream stands for (its body read)."""
    if response.status_code != 200:
        return from_response(response.status_code, response.content)
    return UnexpectedResponseError(
        f"GET /v1/events: HTTP 200 with content-type {response.headers.get('content-type')!r}, "
        "not text/event-stream",
        status=200,
        body=response.text[:2000],
    )


def no_answer(settings: Settings, e: httpx.TransportError) -> TransportError:
    """Our error for a stream that could not be opened (chained by the caller)."""
    return TransportError(
        f"GET {settings.url}/v1/events: no answer from the server ({type(e).__name__}: {e})"
    )


class Reconnects:
    """When to connect again: after a failure to open the stream, while
    ``reconnect`` and the failure is no answer or a 5xx, at most
    ``settings.retries`` times until a stream was first open and without
    limit after; after a stream that ended, always while ``reconnect``.
    Pauses grow as the client's retries do (at most 5 s) and start again
    once a stream is open."""

    def __init__(self, settings: Settings, reconnect: bool) -> None:
        self.settings = settings
        self.reconnect = reconnect
        self.opened = False
        self.failures = 0

    def open(self) -> None:
        """A stream is open."""
        self.opened = True
        self.failures = 0

    def retry_open(self, e: OrderlyError | httpx.TransportError) -> bool:
        """Whether to try again after failing to open the stream with ``e``."""
        if not self.reconnect:
            return False
        if not isinstance(e, httpx.TransportError):
            status = getattr(e, "status", None)
            if not (isinstance(status, int) and status >= 500):
                return False
        return self.opened or self.failures < self.settings.retries

    def pause(self) -> float:
        """Seconds to wait before the next connection."""
        self.failures += 1
        return retry_delay(self.failures, self.settings.retry_backoff)
