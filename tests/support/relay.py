"""A raw TCP relay on 127.0.0.1 in front of the real server, for tests.

It records every byte clients send (so a test can read every request line and header that
reached the server) and can cut one connection in the middle of a package's body, as a
flaky line would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Relay:
    """Forward 127.0.0.1:<port> to ``upstream``; record requests; optionally cut once."""

    upstream: tuple[str, int]
    cut_package_after: int | None = None
    sent: list[bytes] = field(default_factory=list)
    cuts: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closing = False
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            state = {"armed": False, "count": 0}
            self._spawn(self._pump_requests, client, server, state)
            self._spawn(self._pump_answers, server, client, state)

    def _pump_requests(
        self, src: socket.socket, dst: socket.socket, state: dict[str, object]
    ) -> None:
        while data := _recv(src):
            with self._lock:
                self.sent.append(data)
                if self.cut_package_after is not None and self.cuts == 0 and b".7z HTTP/" in data:
                    state["armed"] = True
            _send(dst, data)
        _shutdown(dst)

    def _pump_answers(
        self, src: socket.socket, dst: socket.socket, state: dict[str, object]
    ) -> None:
        while data := _recv(src):
            if state["armed"]:
                count = int(str(state["count"])) + len(data)
                state["count"] = count
                if self.cut_package_after is not None and count > self.cut_package_after:
                    _send(dst, data[: max(0, len(data) - (count - self.cut_package_after))])
                    with self._lock:
                        self.cuts += 1
                    state["armed"] = False
                    for sock in (src, dst):
                        _close(sock)
                    return
            _send(dst, data)
        _shutdown(dst)

    def requests(self) -> list[str]:
        """Every request head (request line and headers) clients sent, in order."""
        raw = b"".join(self.sent).decode("latin-1")
        return [part for part in raw.split("\r\n\r\n") if part.strip()]

    def close(self) -> None:
        self._closing = True
        _close(self._listener)
        for sock in self._sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=5)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
