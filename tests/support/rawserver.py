"""A raw-socket HTTP server on 127.0.0.1 that sends scripted, broken replies, for tests.

Each request's path picks a reply (see :class:`RawServer` and the ``reply_*`` functions):
short bodies, stalls, trickles, over-long bodies, resets, endless bodies, error statuses, and
a package that answers ``Range`` + ``If-Range`` the way a real server does. Every request head
is recorded, so a test can check what the client sent. Nothing here is well-behaved on purpose.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_SOCKET_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    """One request as received: method, path, headers (lower-case names)."""

    method: str
    path: str
    headers: dict[str, str]


Reply = Callable[["RawServer", socket.socket, Request], None]


def head(status: str, headers: dict[str, str | int] | None = None) -> bytes:
    """A status line and headers, ending with the empty line."""
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Package:
    """A file the server offers with an ETag, resumable or not."""

    body: bytes
    etag: str = '"v1"'

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class RawServer:
    """Listen on 127.0.0.1:<port 0>; answer each request with ``routes[path]``.

    Attributes:
        routes: Path -> reply function; unknown paths get a plain 404.
        requests: Every request received, in order.
    """

    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.settimeout(_SOCKET_TIMEOUT)
            with self._lock:
                self._clients.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        try:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                raw, _, buffer = buffer.partition(b"\r\n\r\n")
                request = _parse(raw)
                with self._lock:
                    self.requests.append(request)
                route = self.routes.get(request.path, reply_status(404, b"not here"))
                route(self, client, request)
        except OSError:
            return
        finally:
            _close(client)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less when the server is closed."""
        self.stopping.wait(seconds)

    def close(self) -> None:
        self.stopping.set()
        _close(self._listener)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _close(client)
        for thread in self._threads:
            thread.join(timeout=5)


def _parse(raw: bytes) -> Request:
    lines = raw.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class Hangup(OSError):
    """Raised by a reply to end the connection (the server closes it)."""


# --- replies ---------------------------------------------------------------------------------


def reply_body(body: bytes, headers: dict[str, str | int] | None = None) -> Reply:
    """A correct 200 answer with ``body``."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Content-Length": len(body), **(headers or {})}) + body)

    return reply


def reply_short(body: bytes, sent: int) -> Reply:
    """Announce ``len(body)`` bytes, send only ``sent`` of them, close."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Content-Length": len(body)}) + body[:sent])
        raise Hangup

    return reply


def reply_stall(length: int, sent: int = 0) -> Reply:
    """Send the headers (and ``sent`` body bytes), then nothing, until the server closes."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Content-Length": length}) + b"x" * sent)
        server.wait(_SOCKET_TIMEOUT)
        raise Hangup

    return reply


def reply_stall_before_headers() -> Reply:
    """Accept the request and never answer."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        server.wait(_SOCKET_TIMEOUT)
        raise Hangup

    return reply


def reply_trickle(length: int, every: float = 0.5) -> Reply:
    """Announce ``length`` bytes and send one every ``every`` seconds."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Content-Length": length}))
        for _ in range(length):
            client.sendall(b"t")
            server.wait(every)
            if server.stopping.is_set():
                break
        raise Hangup

    return reply


def reply_reset(body: bytes, sent: int) -> Reply:
    """Send ``sent`` bytes of the body, then reset the connection (RST, not FIN)."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Content-Length": len(body)}) + body[:sent])
        time.sleep(0.1)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        raise Hangup

    return reply


def reply_endless(chunk: bytes = b"e" * 65536) -> Reply:
    """A 200 without Content-Length that never ends (until the client hangs up)."""

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(head("200 OK", {"Connection": "close"}))
        while not server.stopping.is_set():
            client.sendall(chunk)
        raise Hangup

    return reply


def reply_status(
    status: int, body: bytes = b"", headers: dict[str, str | int] | None = None
) -> Reply:
    """An error status with a small body."""
    reasons = {
        403: "Forbidden",
        404: "Not Found",
        407: "Proxy Authentication Required",
        502: "Bad Gateway",
        503: "Service Unavailable",
        401: "Unauthorized",
    }

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        client.sendall(
            head(
                f"{status} {reasons.get(status, 'Error')}",
                {"Content-Length": len(body), **(headers or {})},
            )
            + body
        )

    return reply


def reply_license_refused(message: str = "license revoked") -> Reply:
    """The update server's refusal of a revoked license: 403, X-Opusi-Error: 2, JSON."""
    body = json.dumps({"error": 2, "message": message}).encode()
    return reply_status(403, body, {"X-Opusi-Error": "2", "Content-Type": "application/json"})


def reply_package(package: Package, cut_first_at: int | None = None) -> Reply:
    """Serve ``package`` with ETag and ranges; the first full answer is cut after some bytes.

    A ``Range: bytes=N-`` with an ``If-Range`` equal to the package's current ETag gets a
    206 with the rest; a stale ``If-Range`` gets the whole file (200), as RFC 9110 says.
    """
    state = {"cut": cut_first_at}

    def reply(server: RawServer, client: socket.socket, request: Request) -> None:
        body, total = package.body, len(package.body)
        wanted = request.headers.get("range", "")
        if wanted.startswith("bytes=") and request.headers.get("if-range") == package.etag:
            start = int(wanted[6:].split("-", 1)[0])
            client.sendall(
                head(
                    "206 Partial Content",
                    {
                        "Content-Length": total - start,
                        "ETag": package.etag,
                        "Content-Range": f"bytes {start}-{total - 1}/{total}",
                    },
                )
                + body[start:]
            )
            return
        cut, state["cut"] = state["cut"], None
        client.sendall(
            head(
                "200 OK", {"Content-Length": total, "ETag": package.etag, "Accept-Ranges": "bytes"}
            )
            + body[:cut]
        )
        if cut is not None:
            raise Hangup

    return reply
