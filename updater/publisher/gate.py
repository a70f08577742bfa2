"""cheroot's worker threads get a connection only once its request head has arrived.

cheroot hands every accepted connection to a worker thread at once, and the worker waits in a
blocking read for the request line and headers (up to ``timeout`` seconds per read, restarted by
every byte). 2,000 connections that send nothing, or 64 that send their headers a line a second
(slow loris), so keep all 32 workers waiting and a normal request queued behind them; with TLS,
cheroot even does the handshake in the one thread that accepts, so a single connection that
sends nothing stops all accepting for ``timeout`` seconds.

:class:`GatedServer` puts one thread in front of the workers, as nginx does with its event loop:
the TLS handshake and the reading of the request head happen there without blocking, for any
number of connections. A connection goes on to a worker, with the bytes read so far, once its
head is complete (an empty line) or larger than the header limit (cheroot answers 413); after
each answer it waits in cheroot's keep-alive selector, and comes back here when its next request
begins. cheroot still parses and answers every request. A head that is not complete within
``header_timeout`` seconds (the handshake included) gets cheroot's 408 and the connection is
closed; the answer's body is sent by the worker with cheroot's own ``timeout`` per write, however
long the whole download takes.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from cheroot import errors, server, wsgi
from cheroot.makefile import MakeFile, StreamReader
from cheroot.ssl.builtin import BuiltinSSLAdapter

#: Seconds a connection may take to send its request head (cheroot's ``timeout`` is per read).
HEADER_TIMEOUT = 10.0

#: Connections waiting at most; beyond, the one waiting longest gets its 408 early (on Windows,
#: select() takes 512 sockets at most).
MAX_WAITING = 500 if sys.platform == "win32" else 50_000

_READ_BLOCK = 16 * 1024
_HEAD_ENDS = (b"\n\r\n", b"\n\n")  # an empty line; cheroot answers 400 for the bare-LF one
_PLAIN_TO_TLS_TEXT = b"The client sent a plain HTTP request, but this server only speaks HTTPS."
_PLAIN_TO_TLS = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_PLAIN_TO_TLS_TEXT), _PLAIN_TO_TLS_TEXT)
)


class _ReadAheadIO(socket.SocketIO):
    """A socket's reads, after the bytes the gate read ahead of the worker."""

    def __init__(self, sock: socket.socket, mode: str) -> None:
        super().__init__(sock, mode)  # type: ignore[arg-type]
        self.ahead = bytearray()

    def readinto(self, b: Any) -> int | None:
        if self.ahead:
            n = min(len(b), len(self.ahead))
            b[:n] = self.ahead[:n]
            del self.ahead[:n]
            return n
        return super().readinto(b)


class _Reader(StreamReader):
    """cheroot's socket reader over :class:`_ReadAheadIO`."""

    def __init__(self, sock: socket.socket, mode: str = "rb", bufsize: int = 8192) -> None:
        self.raw_io = _ReadAheadIO(sock, mode)
        super(StreamReader, self).__init__(self.raw_io, bufsize)
        self.bytes_read = 0


class BodilessRequest(server.HTTPRequest):
    """cheroot's request, except that a request body is never read after the answer.

    The update server takes none (GET and HEAD only; anything else is 405 at once), but cheroot
    reads what a client announced before it reads that connection's next request, holding a
    worker for as long as the client takes: 64 POSTs sending a byte a second kept a normal
    request waiting past 15 s. A connection whose request announced a body it has not sent is
    closed after the answer instead (RFC 9112 9.6 lets a server defend itself so).
    """

    def send_headers(self) -> None:
        if self.chunked_read or getattr(self.rfile, "remaining", 0) > 0:
            self.close_connection = True
        super().send_headers()


class GatedConnection(server.HTTPConnection):
    """cheroot's connection, its reads preceded by what the gate read (``ConnectionClass``)."""

    RequestHandlerClass = BodilessRequest

    def __init__(self, srv: Any, sock: socket.socket, makefile: Any = MakeFile) -> None:
        def files(sock: socket.socket, mode: str = "r", bufsize: int = 8192) -> Any:
            return _Reader(sock, mode, bufsize) if "r" in mode else makefile(sock, mode, bufsize)

        super().__init__(srv, sock, files)
        self.handshaken = not isinstance(sock, ssl.SSLSocket)
        self.head_seen = 0  # bytes of the head already searched for its end

    def head(self) -> bytes:
        """What has arrived of the request head: the reader's buffer (pipelined), then ours."""
        buffered = self.rfile.peek(1) if self.rfile.has_data() else b""
        return bytes(buffered) + bytes(self.rfile.raw_io.ahead)


class LazyHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's TLS adapter, the handshake left to the gate (cheroot's ``wrap`` does it in the
    thread that accepts, blocking it for up to ``timeout`` seconds)."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        try:
            wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False,
                                               server_side=True)
        except OSError as e:
            raise errors.FatalSSLAlert(*e.args) from e
        return wrapped, {}  # the environ entries once the handshake is done (the gate)


class _Gate:
    """The thread where connections wait for their request heads."""

    def __init__(self, srv: GatedServer, release: Callable[[Any], None]) -> None:
        self.srv = srv
        self.release = release
        self.selector = selectors.DefaultSelector()
        self.waker, self.wake_end = socket.socketpair()
        self.waker.setblocking(False)
        self.wake_end.setblocking(False)
        self.selector.register(self.wake_end, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        self.incoming: list[GatedConnection] = []
        self.waiting: dict[GatedConnection, float] = {}  # deadline; oldest first
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="opusi-gate", daemon=True)

    def put(self, conn: GatedConnection) -> None:
        """Let ``conn`` wait for its request head (any thread)."""
        with self.lock:
            taken = not self.stopped
            if taken:
                self.incoming.append(conn)
        if not taken:
            _close(conn)
            return
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending anyway
            self.waker.send(b"\0")

    def stop(self) -> None:
        """End the thread and close every waiting connection."""
        with self.lock:
            self.stopped = True
        with contextlib.suppress(OSError):
            self.waker.send(b"\0")
        if self.thread.is_alive():
            self.thread.join()
        for conn in [*self.incoming, *self.waiting]:
            _close(conn)
        self.incoming.clear()
        self.waiting.clear()
        self.selector.close()
        self.waker.close()
        self.wake_end.close()

    def _run(self) -> None:
        while not self.stopped:
            try:
                self._turn()
            except Exception:  # the gate must go on: without it no request is answered
                self.srv.error_log("error in the gate", logging.ERROR, traceback=True)
                time.sleep(0.1)

    def _turn(self) -> None:
        first = next(iter(self.waiting.values()), None)
        timeout = 1.0 if first is None else min(1.0, max(0.0, first - time.monotonic()))
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(OSError):
                    self.wake_end.recv(4096)
            else:
                self._guard(key.data)
        with self.lock:
            arrived, self.incoming = self.incoming, []
        for conn in arrived:
            if len(self.waiting) >= MAX_WAITING:
                self._time_out(next(iter(self.waiting)))
            self._guard(conn, admit=True)
        now = time.monotonic()
        while self.waiting:
            conn, deadline = next(iter(self.waiting.items()))
            if deadline > now:
                break
            self._time_out(conn)

    def _guard(self, conn: GatedConnection, admit: bool = False) -> None:
        try:
            if admit:
                self.waiting[conn] = time.monotonic() + self.srv.header_timeout
                conn.socket.settimeout(0)
                self.selector.register(conn.socket, selectors.EVENT_READ, conn)
            self._advance(conn)
        except Exception:  # one connection's surprise must not end the gate
            self.srv.error_log("error while reading a request head", logging.ERROR,
                               traceback=True)
            self._drop(conn)

    def _advance(self, conn: GatedConnection) -> None:
        """Read what has arrived; hand the connection on once its head is complete."""
        if not conn.handshaken and not self._handshake(conn):
            return
        limit = self.srv.max_request_header_size or 1 << 20
        while True:
            head = conn.head()
            if any(end in head[max(0, conn.head_seen - 2):] for end in _HEAD_ENDS) or (
                    len(head) >= limit):
                self._forget(conn)
                conn.head_seen = 0
                conn.socket.settimeout(self.srv.timeout)
                self.release(conn)
                return
            conn.head_seen = len(head)
            try:
                data = conn.socket.recv(_READ_BLOCK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self._drop(conn)
                return
            if not data:  # the client closed
                self._drop(conn)
                return
            conn.rfile.raw_io.ahead += data

    def _handshake(self, conn: GatedConnection) -> bool:
        sock = conn.socket
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ssl.SSLError as e:
            if "http request" in str(e).lower():
                self.srv.error_log("a client spoke plain HTTP to the HTTPS port; answered 400")
                with contextlib.suppress(OSError):
                    socket.socket.send(sock, _PLAIN_TO_TLS)
            self._drop(conn)
            return False
        except OSError:
            self._drop(conn)
            return False
        conn.handshaken = True
        conn.ssl_env = self.srv.ssl_adapter.get_environ(sock)
        return True

    def _time_out(self, conn: GatedConnection) -> None:
        self._forget(conn)
        if conn.handshaken:
            with contextlib.suppress(Exception):
                server.HTTPRequest(self.srv, conn).simple_response("408 Request Timeout")
        _close(conn)

    def _forget(self, conn: GatedConnection) -> None:
        self.waiting.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.socket)

    def _drop(self, conn: GatedConnection) -> None:
        self._forget(conn)
        _close(conn)


def _close(conn: GatedConnection) -> None:
    with contextlib.suppress(OSError):
        conn.close()


class GatedServer(wsgi.Server):
    """cheroot's WSGI server whose workers get only connections with a complete request head.

    ``ssl_adapter`` must be a :class:`LazyHandshakeAdapter` (or None).
    """

    ConnectionClass = GatedConnection

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._gate: _Gate | None = None

    def prepare(self) -> None:
        super().prepare()
        self._gate = _Gate(self, super().process_conn)
        self._gate.thread.start()

    def process_conn(self, conn: GatedConnection) -> None:
        """A new connection, or one readable again after a keep-alive pause: to the gate."""
        if self._gate is None:
            _close(conn)
        else:
            self._gate.put(conn)

    def stop(self) -> None:
        if self._gate is not None:
            self._gate.stop()  # first: no connection goes to a worker that is stopping
            self._gate = None
        super().stop()
