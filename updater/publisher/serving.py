"""Running the update server: :mod:`updater.publisher.app` on cheroot, until it is stopped.

Serves the application from background threads on cheroot (threaded, TLS via the standard
library) and stops on Ctrl+C or SIGTERM. Connections wait for their request heads in
:mod:`updater.publisher.gate`, not in the worker threads, so idle and slow-loris connections
keep no request waiting. Reads the certificate and key files, and with a timestamp key has
:mod:`updater.publisher.repository` re-sign ``metadata/timestamp.json`` before it expires
(freeze protection); writes nothing else. cheroot's own log goes to :mod:`logging`
through :func:`~updater.publisher.app.scrub_addresses`, so it never names a client's address.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType

from updater.core.errors import OpusiError
from updater.publisher.app import RepositoryApp, make_app, scrub_addresses
from updater.publisher.gate import HEADER_TIMEOUT, GatedServer, LazyHandshakeAdapter
from updater.publisher.throttle import FailureThrottle

logger = logging.getLogger(__name__)

#: How often the freshness thread looks at timestamp.json, and how much validity it keeps.
RESIGN_INTERVAL = 600.0
MIN_REMAINING = timedelta(days=1)


#: Connections the kernel queues for the server before it accepts them.
LISTEN_QUEUE = 1024
#: The most header bytes a request may send (413 above it).
MAX_HEADER_BYTES = 64 * 1024
#: Open files ``serve`` asks for: every connection holds one, waiting ones too (systemd's
#: default of 1,024 would leave cheroot failing to accept, and logging it, in a tight loop).
OPEN_FILES = 65536


class _QuietServer(GatedServer):
    """cheroot's server, its error log sent to :mod:`logging` with addresses removed.

    cheroot names the client's address in some messages (TLS handshake failures); those
    pass through :func:`scrub_addresses` like everything else it logs.
    """

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        text = str(msg)
        if traceback:
            text = f"{text}\n{_format_exception()}"
        logger.log(level, "%s", scrub_addresses(text))


def _format_exception() -> str:
    return "".join(traceback.format_exc())


class Server:
    """The update server, run in background threads (for ``serve`` and for tests).

    Call :meth:`start`, read :attr:`port`, and :meth:`stop` when done; after ``stop`` no
    thread of the server is left running.
    """

    def __init__(
        self,
        repo_dir: Path,
        registry_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        timestamp_key: Path | None = None,
        threads: int = 16,
        resign_interval: float = RESIGN_INTERVAL,
        min_remaining: timedelta = MIN_REMAINING,
        throttle: FailureThrottle | None = None,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        """Configure the server; nothing is opened before :meth:`start`.

        Args:
            repo_dir: The repository (with ``metadata/`` and ``targets/``).
            registry_path: The license registry's SQLite file (must exist).
            host: Address to listen on.
            port: Port to listen on; 0 picks a free one (see :attr:`port`).
            certfile: PEM certificate (chain) for HTTPS; with ``keyfile``.
            keyfile: PEM private key for HTTPS.
            timestamp_key: PEM private key of the online timestamp role; when given,
                ``timestamp.json`` is re-signed before it expires.
            threads: Worker threads, i.e. requests answered at the same time.
            resign_interval: Seconds between two looks at ``timestamp.json``.
            min_remaining: Validity ``timestamp.json`` keeps at least.
            throttle: Slows down addresses that send refused license numbers (default:
                :mod:`updater.publisher.throttle`'s limits).
            header_timeout: Seconds a connection may take to send a request's line and headers
                (then 408 and closed); sending an answer is not limited by it.
        """
        self.repo_dir = repo_dir
        self.registry_path = registry_path
        self.host = host
        self._port = port
        self.tls = (certfile, keyfile) if certfile is not None and keyfile is not None else None
        self.timestamp_key = timestamp_key
        self.threads = threads
        self.resign_interval = resign_interval
        self.min_remaining = min_remaining
        self.throttle = throttle
        self.header_timeout = header_timeout
        self._app: RepositoryApp | None = None
        self._server: _QuietServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with port 0)."""
        return self._port

    def start(self) -> None:
        """Open the registry, bind the socket and start serving in background threads.

        Raises:
            RepositoryError: The repository folder is not a repository.
            LicenseDatabaseError: The registry is missing or unreadable.
            OpusiError: The address cannot be listened on, or the TLS files are unusable.
        """
        self._app = make_app(self.repo_dir, self.registry_path, self.throttle)
        try:
            self._server = self._bind(self._app)
        except BaseException:
            self._app.close()
            raise
        self._spawn(self._server.serve, "opusi-server")
        if self.timestamp_key is not None:
            self._spawn(self._keep_timestamp_fresh, "opusi-timestamp")
        logger.info("serving %s on port %d", self.repo_dir, self._port)

    def _bind(self, app: RepositoryApp) -> _QuietServer:
        # a release morning's burst must not find the listen queue full (cheroot's default
        # is 5); no request needs more than a few kB of headers (cheroot's default: no limit)
        server = _QuietServer((self.host, self._port), app, numthreads=self.threads,
                              request_queue_size=LISTEN_QUEUE,
                              header_timeout=self.header_timeout)
        server.max_request_header_size = MAX_HEADER_BYTES
        try:
            if self.tls is not None:
                server.ssl_adapter = LazyHandshakeAdapter(str(self.tls[0]), str(self.tls[1]))
            server.prepare()
        except (OSError, ValueError) as e:
            raise OpusiError(
                f"The server cannot listen on {self.host} port {self._port}: {e}.",
                hint="Choose another port, or check the certificate and key files.",
            ) from e
        self._port = int(server.bind_addr[1])
        return server

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stopped or ``timeout`` passed; True when it stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            while thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                thread.join(min(left, 1.0) if left is not None else 1.0)
        return True

    def stop(self) -> None:
        """Stop accepting, finish the requests under way, and end every thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._app is not None:
            self._app.close()
        self._server = None
        self._app = None

    def _keep_timestamp_fresh(self) -> None:
        """Re-sign timestamp.json now and every ``resign_interval`` seconds until stopped."""
        while not self._stopping.is_set():
            try:
                self._refresh_timestamp()
            except Exception:
                logger.exception("could not refresh timestamp.json; serving continues")
            self._stopping.wait(self.resign_interval)

    def _refresh_timestamp(self) -> None:
        """One look at timestamp.json; the key is read each time, so it may be replaced."""
        from updater.publisher.repository import load_signer, refresh_timestamp

        if self.timestamp_key is None:
            return
        signer = load_signer(self.timestamp_key)
        if refresh_timestamp(self.repo_dir, signer, min_remaining=self.min_remaining):
            logger.info("timestamp.json re-signed")


def serve(
    repo_dir: Path,
    db: Path,
    host: str,
    port: int,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    timestamp_key: Path | None = None,
    threads: int = 16,
    request_log: Path | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve ``repo_dir`` until interrupted (Ctrl+C, or SIGTERM in the main thread).

    Args:
        repo_dir: The repository.
        db: The license registry.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        certfile: PEM certificate for HTTPS (with ``keyfile``); plain HTTP without.
        keyfile: PEM private key for HTTPS.
        timestamp_key: The online timestamp key, for freeze protection.
        threads: Worker threads.
        request_log: Append one line per request here (``opusi-repo status`` reads it).
        ready: Called with the port once the server accepts connections.

    Raises:
        RepositoryError: ``repo_dir`` is not a repository.
        LicenseDatabaseError: The registry is missing or unreadable.
        OpusiError: The address cannot be listened on.
    """
    server = Server(
        repo_dir, db, host=host, port=port, certfile=certfile, keyfile=keyfile,
        timestamp_key=timestamp_key, threads=threads,
    )  # fmt: skip
    if request_log is not None:
        write_request_log(request_log)
    _raise_open_files_limit()
    server.start()
    restore = _interrupt_on_sigterm()
    try:
        if ready is not None:
            ready(server.port)
        server.wait()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.stop()
        restore()


def write_request_log(path: Path) -> logging.Handler:
    """Append the request lines (``updater.publisher.app.requests``) to ``path``, with the time
    in UTC; return the handler (to remove it again)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    requests = logging.getLogger("updater.publisher.app.requests")
    requests.addHandler(handler)
    requests.setLevel(logging.INFO)
    return handler


def _raise_open_files_limit() -> None:
    """Raise the soft limit of open files to :data:`OPEN_FILES`, or the hard limit if lower
    (POSIX; nginx's ``worker_rlimit_nofile``)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            logger.warning("could not raise the limit of open files from %d: %s", soft, e)


def _interrupt_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into KeyboardInterrupt (main thread only); return the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
