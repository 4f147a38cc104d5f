"""What the sync and async clients share around httpx: where the server is,
the headers, per-call timeouts, which failures are sent again, and reading
an answer into a model or an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from . import errors
from ._ops import DEFAULT_SERVER, Call
from ._version import __version__

T = TypeVar("T")

RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
"""Transport failures after which an idempotent call is sent again."""


@dataclass(frozen=True)
class Settings:
    """How a client reaches the server (shared by both clients and the worker)."""

    url: str
    token: str | None
    timeout: float
    retries: int
    retry_backoff: float
    headers: Mapping[str, str]

    @classmethod
    def resolve(
        cls,
        url: str | None,
        token: str | None,
        timeout: float,
        retries: int,
        retry_backoff: float,
        headers: Mapping[str, str] | None,
    ) -> Settings:
        """Fills what is left out as the Rust CLI does: ``ORDERLY_SERVER``
        (default ``http://127.0.0.1:7771``) and ``ORDERLY_TOKEN``."""
        url = url or os.environ.get("ORDERLY_SERVER") or DEFAULT_SERVER
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"server URL {url!r} must start with http:// or https://")
        if token is None:
            token = os.environ.get("ORDERLY_TOKEN") or None
        if timeout <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        return cls(url.rstrip("/"), token, float(timeout), retries, retry_backoff, dict(headers or {}))

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments of ``httpx.Client`` / ``httpx.AsyncClient``."""
        headers = {"user-agent": f"orderly-python/{__version__} httpx/{httpx.__version__}"}
        headers.update(self.headers)
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        return {
            "base_url": self.url + "/",
            "headers": headers,
            "timeout": httpx.Timeout(self.timeout),
            "follow_redirects": False,
        }

    def timeout_for(self, call: Call[Any]) -> httpx.Timeout:
        """The call's timeout: a long poll may be held for its duration on top."""
        return httpx.Timeout(self.timeout, read=self.timeout + call.hold_ms / 1000)


def request_kwargs(call: Call[Any], settings: Settings, headers: Mapping[str, str] | None) -> dict[str, Any]:
    """Arguments of ``httpx.Client.request`` for ``call``."""
    content = call.content()
    h = {"content-type": "application/json"} if content is not None else {}
    h.update(headers or {})
    return {
        "method": call.method,
        "url": call.path.lstrip("/"),
        "params": call.params,
        "content": content,
        "headers": h,
        "timeout": settings.timeout_for(call),
    }


def should_retry(
    call: Call[Any], failure: BaseException | httpx.Response, tries: int, settings: Settings
) -> bool:
    """Whether ``call`` is sent again after ``failure`` (its try number ``tries``)."""
    if not call.idempotent or tries > settings.retries:
        return False
    if isinstance(failure, httpx.Response):
        return failure.status_code >= 500
    return isinstance(failure, RETRYABLE)


def transport_error(call: Call[Any], e: httpx.TransportError, settings: Settings) -> errors.TransportError:
    """Our error for httpx's ``e`` (chained by the caller)."""
    what = "the request was not sent again" if not call.idempotent else "gave up after retries"
    note = "" if call.idempotent else "; it may or may not have been applied"
    return errors.TransportError(
        f"{call.method} {settings.url}{call.path}: no answer from the server "
        f"({type(e).__name__}: {e}); {what}{note}"
    )


def read(call: Call[T], response: httpx.Response) -> T:
    """The answer as the call's model, or the error it stands for."""
    if 200 <= response.status_code < 300:
        try:
            obj = response.json()
        except ValueError:
            raise errors.UnexpectedResponseError(
                f"{call.method} {call.path}: HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
                body=response.text[:2000],
            ) from None
        return call.parse(obj)
    raise errors.from_response(response.status_code, response.content)
