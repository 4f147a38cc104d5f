"""Fixtures over :mod:`support`: servers, clients and worker processes,
all stopped at the end of each test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import orderly
from support import TESTS, Server, WorkerProcess


@pytest.fixture(autouse=True)
def _no_orderly_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients in tests find the server only where the test says."""
    for k in list(os.environ):
        if k.startswith("ORDERLY_") and k != "ORDERLY_BIN":
            monkeypatch.delenv(k)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts servers (with extra ``orderly serve`` flags); all stopped at the end."""
    servers: list[Server] = []

    def start(*args: str, listen: str = "127.0.0.1:0") -> Server:
        s = Server(tmp_path / f"data{len(servers)}", list(args), listen)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A fresh server with default settings."""
    return start_server()


@pytest.fixture
def client(server: Server) -> Iterator[orderly.Client]:
    """A sync client of ``server``."""
    with orderly.Client(server.url) as c:
        yield c


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts worker child processes; all killed at the end."""
    workers: list[WorkerProcess] = []

    def spawn(server: Server, *args: str, cwd: Path = TESTS, **env: str) -> WorkerProcess:
        w = WorkerProcess(tmp_path / f"worker{len(workers)}.log", list(args), server.url, cwd, **env)
        workers.append(w)
        return w

    yield spawn
    for w in workers:
        w.close()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"
