"""A slow line on loopback: a TCP relay in front of a server whose answers share one rate.

Models a practice's DSL line (e.g. 16 Mbit/s = 2 MB/s down): every connection's answer bytes
draw from one shared budget, so parallel downloads split the line as they would. Requests go
up unthrottled. Used by the benchmark's slow-link rows; 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

_CHUNK = 16 * 1024


class _Budget:
    """Bytes per second shared by every connection (each send waits for its turn)."""

    def __init__(self, rate: float) -> None:
        self.rate, self._lock, self._free_at = rate, threading.Lock(), time.monotonic()

    def take(self, size: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._free_at = max(now, self._free_at) + size / self.rate
            wait = self._free_at - now
        if wait > 0:
            time.sleep(wait)


class SlowLink:
    """Forward ``127.0.0.1:<port>`` to ``upstream``, answers at ``rate`` bytes per second."""

    def __init__(self, upstream: tuple[str, int], rate: float) -> None:
        self.upstream, self.budget = upstream, _Budget(rate)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The relay's URL, for update.ini's ``server``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if slow:
                    self.budget.take(len(data))
                dest.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dest.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._closing = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
