"""A real TCP proxy in front of the real server that breaks chosen requests,
as networks and load balancers do: the client's retries are tested against
true connection faults, never against a stand-in for the server.

Faults, applied to requests in the order they arrive (then pass-through):

- ``"drop"``: the request reaches the server (which commits it), the
  answer is read, and the client's connection is closed without it;
- ``"bad_gateway"``: answered ``502`` with an HTML page, as a load balancer
  does while the server restarts (the server never sees it);
- ``"pass"``: forwarded, answer returned.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterable
from typing import BinaryIO
from urllib.parse import urlsplit

BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 45\r\n"
    b"connection: close\r\n\r\n<html><body>502 Bad Gateway</body></html>\n\n\n\n"
)


def _read_message(reader: BinaryIO) -> bytes | None:
    """One HTTP/1.1 message (head and a Content-Length body) from a buffered reader."""
    head = b""
    while True:
        line = reader.readline()
        if not line:
            return head or None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    length = 0
    for h in head.split(b"\r\n")[1:]:
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = reader.read(length) if length else b""
    return head + body


class FlakyProxy:
    """Listens on ``127.0.0.1:0``; ``url`` is where clients go instead of the server."""

    def __init__(self, upstream: str, faults: Iterable[str] = ()) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.faults = list(faults)
        self.requests: list[tuple[str, str, str]] = []
        """(method, path, what was done) of every request, in order."""
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.connection, self.rfile)  # type: ignore[arg-type]

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _serve(self, conn: socket.socket, rfile: BinaryIO) -> None:
        while True:
            request = _read_message(rfile)
            if not request:
                return
            method, path = request.split(b" ", 2)[:2]
            with self._lock:
                fault = self.faults.pop(0) if self.faults else "pass"
                self.requests.append((method.decode(), path.decode(), fault))
            if fault == "bad_gateway":
                conn.sendall(BAD_GATEWAY)
                return
            answer = self._forward(request)
            if fault == "drop":
                conn.shutdown(socket.SHUT_RDWR)
                return
            conn.sendall(answer)

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=60) as up:
            up.sendall(request)
            return _read_message(up.makefile("rb")) or b""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, path_part: str) -> int:
        """How many requests had ``path_part`` in their path."""
        with self._lock:
            return sum(1 for _, p, _ in self.requests if path_part in p)
