"""``python -m orderly worker module:handler --queue q --concurrency 4``.

``TARGET`` is ``module:attribute``, imported with the current directory on
``sys.path`` (as uvicorn does): a function (run on the ``--queue`` queues)
or a :class:`orderly.Worker` (its handlers; ``--queue`` picks some). The
server is found as the Rust CLI finds it: ``--server`` / ``ORDERLY_SERVER``
(default ``http://127.0.0.1:7771``), ``--token`` / ``ORDERLY_TOKEN``. The
worker's settings also read ``ORDERLY_WORKER_…`` variables. Durations are
humantime strings (``500ms``, ``30s``, ``5m``, ``1h30m``).

Exit status: 0 after a clean stop, 1 if jobs had to be given up at
shutdown or the server refused the worker, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .client import Client
from .errors import OrderlyError
from .worker import Worker

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in a humantime string such as ``30s``, ``1m30s`` or ``250ms``."""
    s = text.strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write it with its unit, like 500ms, 30s, 5m or 1h30m"
        )
    return total


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return n


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orderly", description="Orderly for Python.")
    p.add_argument("--version", action="version", version=f"orderly {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser(
        "worker",
        help="run a pull worker",
        description="Run handlers on the jobs of Orderly queues (a pull worker).",
    )
    w.add_argument("target", metavar="TARGET", help="module:function or module:worker (an orderly.Worker)")
    w.add_argument("--queue", "-q", action="append", default=[], help="queue to work on (repeatable)")
    w.add_argument(
        "--concurrency",
        "-c",
        type=_positive_int,
        default=_env("ORDERLY_WORKER_CONCURRENCY"),
        help="jobs run at once per queue [env ORDERLY_WORKER_CONCURRENCY; default: the worker's, 1]",
    )
    w.add_argument(
        "--server", default=None, help="server URL [env ORDERLY_SERVER; default http://127.0.0.1:7771]"
    )
    w.add_argument("--token", default=None, help="bearer token [env ORDERLY_TOKEN]")
    w.add_argument(
        "--name",
        default=_env("ORDERLY_WORKER_NAME"),
        help="worker name shown on jobs [env ORDERLY_WORKER_NAME]",
    )
    w.add_argument(
        "--lease",
        type=parse_duration,
        default=_env("ORDERLY_WORKER_LEASE"),
        help="lease to ask for [env ORDERLY_WORKER_LEASE; default: the queue's]",
    )
    w.add_argument("--poll", type=parse_duration, default=None, help="claim long poll [default 25s]")
    w.add_argument(
        "--max-jobs",
        type=_positive_int,
        default=_env("ORDERLY_WORKER_MAX_JOBS"),
        help="exit after this many jobs [env ORDERLY_WORKER_MAX_JOBS]",
    )
    w.add_argument(
        "--shutdown-grace",
        type=parse_duration,
        default=None,
        help="how long running jobs may finish after SIGTERM [default 30s]",
    )
    w.add_argument(
        "--cancel-grace",
        type=parse_duration,
        default=None,
        help="how long a handler asked to stop has to return before an async one is cancelled [default 5s]",
    )
    w.add_argument(
        "--log-level",
        default=os.environ.get("ORDERLY_LOG", "info"),
        help="debug, info, warning or error [env ORDERLY_LOG]",
    )
    return p


def load_target(spec: str) -> Any:
    """The object named ``module:attribute`` (the attribute may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {spec!r} must be module:attribute, e.g. myapp.jobs:worker")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r} (from {os.getcwd()}): {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _worker(args: argparse.Namespace) -> tuple[Worker, list[str] | None]:
    """The worker to run, and the queues it runs (``None``: all of its)."""
    target = load_target(args.target)
    queues = None
    if isinstance(target, Worker):
        worker = target
        queues = args.queue or None
    elif callable(target):
        if not args.queue:
            raise ValueError(f"{args.target} is a function: say which queue it works on with --queue")
        worker = Worker()
        for q in args.queue:
            worker.add_handler(q, target)
    else:
        raise ValueError(f"{args.target} is a {type(target).__name__}: give a function or an orderly.Worker")
    if args.name:
        worker.name = args.name
    if args.lease is not None:
        worker.lease = args.lease
    if args.poll is not None:
        worker.poll = args.poll
    if args.shutdown_grace is not None:
        worker.shutdown_grace = args.shutdown_grace
    if args.cancel_grace is not None:
        worker.cancel_grace = args.cancel_grace
    return worker, queues


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # One line per request is httpx's debug detail, not the worker's story.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    # Values from the environment arrive as strings: check them as flags are.
    for name, conv in (
        ("concurrency", _positive_int),
        ("max_jobs", _positive_int),
        ("lease", parse_duration),
    ):
        value = getattr(args, name)
        if isinstance(value, str):
            try:
                setattr(args, name, conv(value))
            except argparse.ArgumentTypeError as e:
                parser.error(f"ORDERLY_WORKER_{name.upper()}: {e}")
    try:
        worker, queues = _worker(args)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    client = None
    if args.server is not None or args.token is not None:
        client = Client(args.server, token=args.token)
        worker._client = client
    try:
        summary = worker.run(concurrency=args.concurrency, queues=queues, max_jobs=args.max_jobs)
    except (OrderlyError, ValueError) as e:
        logging.getLogger("orderly.worker").error("%s", e)
        return 1
    finally:
        if client is not None:
            client.close()
    logging.getLogger("orderly.worker").info(
        "worker done: %d started, %d succeeded, %d failed, %d unreported",
        summary.started,
        summary.succeeded,
        summary.failed,
        summary.unreported,
    )
    return 1 if summary.abandoned else 0
