"""Handlers that the tests' worker child processes run
(``python -m orderly worker handlers:NAME``, with this directory as cwd).

They write what they saw to files under ``MARKER_DIR`` so a test can tell
what happened inside the child.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from orderly import JobContext, Worker


def _marker(ctx: JobContext, suffix: str = "") -> Path:
    return Path(os.environ["MARKER_DIR"]) / f"{ctx.job.id}.{ctx.job.attempt}{suffix}"


def sleepy(payload: Any, ctx: JobContext) -> Any:
    """Takes ``JOB_SECONDS`` (a cancel cuts it short), returns the payload's uid."""
    ctx.wait_cancelled(float(os.environ.get("JOB_SECONDS", "0.3")))
    return {"uid": payload.get("uid") if isinstance(payload, dict) else None}


def hang_first_attempt(payload: Any, ctx: JobContext) -> Any:
    """A job with ``{"hang": true}`` hangs on its first attempt (until the
    process is killed); every other run succeeds at once."""
    _marker(ctx).write_text("started")
    if isinstance(payload, dict) and payload.get("hang") and ctx.job.attempt == 1:
        ctx.wait_cancelled(120)
    return {"attempt": ctx.job.attempt}


def until_cancelled(payload: Any, ctx: JobContext) -> Any:
    """Runs until cancelled (at most 60 s), recording that it saw the cancel."""
    _marker(ctx).write_text("started")
    saw = ctx.wait_cancelled(60)
    _marker(ctx, ".seen").write_text(f"{saw} {ctx.cancel_reason}")
    ctx.raise_if_cancelled()
    return "never cancelled"


def steady(payload: Any, ctx: JobContext) -> Any:
    """Takes ``JOB_SECONDS`` whatever happens (ignores cancels and shutdown)."""
    _marker(ctx).write_text("started")
    import time

    time.sleep(float(os.environ.get("JOB_SECONDS", "1")))
    _marker(ctx, ".done").write_text("done")
    return "steady"


worker = Worker()
"""A Worker with an async handler, to run as ``handlers:worker``."""


@worker.handler("async-cancel")
async def async_until_cancelled(payload: Any, ctx: JobContext) -> Any:
    """Sleeps a minute without looking at the flag: the worker cancels the task."""
    _marker(ctx).write_text("started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        _marker(ctx, ".seen").write_text(f"CancelledError {ctx.cancel_reason}")
        raise
    return "never cancelled"
