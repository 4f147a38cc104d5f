"""What the tests share: the real ``orderly`` binary (``ORDERLY_BIN``)
serving on a free loopback port with a fresh data directory (:class:`Server`),
worker child processes (``python -m orderly worker``, :class:`WorkerProcess`),
bounded waits, and the seed scenario's checks. Nothing is mocked.

Every wait is bounded (:func:`wait_until`) and a failure shows the logs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import orderly

T = TypeVar("T")

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent
REPO = PACKAGE.parent.parent

SEED_IDS = (
    "c880cc1b-dc27-4175-b616-29a69322d156",
    "4f0ea1f1-a5a3-4a7c-a114-17e57a1c55db",
    "15ba0d0a-3c94-4906-a331-054a3847171c",
)
"""The seed scenario's three request UUIDs, in the order they were posted."""


def orderly_bin() -> str:
    """The server binary under test."""
    path = os.environ.get("ORDERLY_BIN") or str(REPO / "target" / "debug" / "orderly")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no orderly binary at {path}: set ORDERLY_BIN, or run clients/python/run-tests.sh "
            "(it builds one with `cargo build -p orderly-cli --bin orderly`)"
        )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``ORDERLY_*`` variable (a developer's
    ORDERLY_TOKEN must not change what a test exercises), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    env.update(extra)
    return env


def tail(path: Path, n: int = 4000) -> str:
    """The end of a log file."""
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(no log)"


def wait_until(cond: Callable[[], T], timeout: float, what: str, diag: Callable[[], str] = lambda: "") -> T:
    """Polls ``cond`` every 20 ms until it returns something truthy (returned), or fails."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}\n{diag()}")
        time.sleep(0.02)


class Server:
    """``orderly serve`` on ``127.0.0.1:0``, its data in a fresh directory."""

    def __init__(
        self,
        data_dir: Path,
        args: list[str] | None = None,
        listen: str = "127.0.0.1:0",
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - kept open while the server runs
        self.proc = subprocess.Popen(
            [orderly_bin(), "serve", "--listen", listen, "--data-dir", str(data_dir), *(args or [])],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(ORDERLY_LOG="info"),
        )
        self.url = wait_until(self._listening, 30, "the server says it is listening", self.log)

    def _listening(self) -> str | None:
        if self.proc.poll() is not None:
            pytest.fail(f"orderly serve exited with {self.proc.returncode}:\n{self.log()}")
        m = re.search(r"listening on (http://[0-9.:]+)", tail(self.log_path, 100_000))
        return m.group(1) if m else None

    def log(self) -> str:
        """The end of the server's log."""
        return "--- server log ---\n" + tail(self.log_path)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class WorkerProcess:
    """``python -m orderly worker ...`` as a child process, its log in a file."""

    def __init__(self, log_path: Path, args: list[str], server: str, cwd: Path = TESTS, **env: str):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - kept open while the worker runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orderly", "worker", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(ORDERLY_SERVER=server, PYTHONUNBUFFERED="1", **env),
            start_new_session=True,
        )

    def log(self) -> str:
        """The end of the worker's log."""
        return f"--- worker log ({self.log_path.name}) ---\n" + tail(self.log_path)

    def started(self) -> list[str]:
        """Job ids in the order the worker said it started them."""
        return re.findall(r"job (\S+) started", tail(self.log_path, 1_000_000))

    def wait_exit(self, timeout: float) -> int:
        """Its exit status (fails the test if it does not exit in time)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {timeout} s\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL (nothing is reported)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self._log.close()


def states(c: orderly.Client, ids: tuple[str, ...] | list[str]) -> list[str]:
    """States of jobs, read last first: a job seen finished stays finished, so
    "k finished implies every earlier one finished" holds across the reads."""
    jobs = [c.job(i) for i in reversed(ids)]
    return [j.state.value for j in reversed(jobs)]


def check_fifo(observed: list[str], poll: int) -> None:
    """The seed's invariants on one read of a concurrency-1 queue's jobs in
    ``seq`` order: at most one running, and nothing runs or finishes before
    every earlier job finished."""
    assert observed.count("running") <= 1, f"poll {poll}: two running at once: {observed}"
    for k, s in enumerate(observed):
        if s in ("running", "succeeded"):
            assert all(e == "succeeded" for e in observed[:k]), (
                f"poll {poll}: job {k} is {s} before an earlier one finished: {observed}"
            )


def job_json(j: orderly.Job) -> dict[str, Any]:
    """A job's fields that do not depend on time."""
    return {k: v for k, v in j.raw.items() if not k.endswith("_at")}


def raw_http(url: str, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Sends ``request`` bytes as they are to the server at ``url`` and reads
    its answer (status, body): for requests no HTTP client would send."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        reader = s.makefile("rb")
        status_line = reader.readline()
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return int(status_line.split()[1]), reader.read(length)
