"""Conversions between Python values and the API's JSON: reading typed
fields of an answer (naming the field when it is not what was expected),
durations to milliseconds, times to RFC 3339."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias

from .errors import OrderlyError

Duration: TypeAlias = float | int | timedelta
"""A duration argument: seconds (``1.5``) or a :class:`datetime.timedelta`."""


class Reader:
    """Reads typed fields of one JSON object, naming the field in any error."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise OrderlyError(f"{what}: expected a JSON object from the server, got {obj!r:.200}")
        self.obj: dict[str, Any] = obj
        self.what = what

    def _bad(self, name: str, expected: str) -> OrderlyError:
        return OrderlyError(
            f"{self.what}.{name}: expected {expected} from the server, got {self.obj.get(name)!r:.200}"
        )

    def any(self, name: str) -> Any:
        return self.obj.get(name)

    def string(self, name: str) -> str:
        v = self.obj.get(name)
        if not isinstance(v, str):
            raise self._bad(name, "a string")
        return v

    def opt_string(self, name: str) -> str | None:
        return None if self.obj.get(name) is None else self.string(name)

    def integer(self, name: str) -> int:
        v = self.obj.get(name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(name, "an integer")
        return v

    def opt_integer(self, name: str) -> int | None:
        return None if self.obj.get(name) is None else self.integer(name)

    def number(self, name: str) -> float:
        v = self.obj.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise self._bad(name, "a number")
        return float(v)

    def boolean(self, name: str) -> bool:
        v = self.obj.get(name)
        if not isinstance(v, bool):
            raise self._bad(name, "true or false")
        return v

    def time(self, name: str) -> datetime:
        v = self.string(name)
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise self._bad(name, "an RFC 3339 time") from None
        if t.tzinfo is None:
            raise self._bad(name, "an RFC 3339 time with its offset")
        return t.astimezone(timezone.utc)

    def opt_time(self, name: str) -> datetime | None:
        return None if self.obj.get(name) is None else self.time(name)

    def items(self, name: str) -> list[Any]:
        v = self.obj.get(name)
        if not isinstance(v, list):
            raise self._bad(name, "a list")
        return v


def ms(value: Duration, name: str) -> int:
    """``value`` (seconds or a timedelta) in whole milliseconds; refuses negative ones."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{name} must be seconds (a number) or a timedelta, not {type(value).__name__}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more: got {value!r}")
    return round(seconds * 1000)


def rfc3339(value: datetime | str, name: str) -> str:
    """``value`` as the RFC 3339 string the API takes (a string is passed as it is)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or an RFC 3339 string, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime: give it a timezone, e.g. datetime.now(timezone.utc)")
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
