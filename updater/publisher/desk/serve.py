"""Running the support desk: its own cheroot server on its own address and port (by default
127.0.0.1:8081), never on the update endpoint's.

Plain HTTP only on this machine's loopback (reach it through an SSH tunnel); on any other
address only with a certificate (``--cert``/``--key``), since staff passwords and the session
cookie travel over it.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from updater.core.errors import UsageError
from updater.publisher.desk.pages import Sources, make_desk
from updater.publisher.licenses import open_registry

log = logging.getLogger(__name__)

DEFAULT_BIND = ("127.0.0.1", 8081)


def check_bind(host: str, certfile: Path | None) -> None:
    """Refuse plain HTTP on an address other computers can reach."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and certfile is None:
        raise UsageError(
            f"The desk on {host} needs a certificate (--cert, --key): staff passwords and "
            "sessions must not travel in the clear. Or bind it to 127.0.0.1 and reach it "
            "through an SSH tunnel.")


def serve_desk(db: str | Path, sources: Sources, host: str, port: int, *,
               certfile: Path | None = None, keyfile: Path | None = None,
               ready: Callable[[int], None] | None = None) -> None:
    """Serve the desk until SIGINT or SIGTERM.

    Raises:
        UsageError: Plain HTTP on an address that is not loopback.
        LicenseDatabaseError: The registry is missing or unreachable.
    """
    check_bind(host, certfile)
    with open_registry(db, create=False) as registry:
        server = wsgi.Server((host, port), make_desk(registry, sources), numthreads=8,
                             server_name="opusi-desk")
        if certfile is not None and keyfile is not None:
            server.ssl_adapter = BuiltinSSLAdapter(str(certfile), str(keyfile))
        server.prepare()
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            if ready is not None:
                ready(int(server.bind_addr[1]))
            server.serve()
        except KeyboardInterrupt:
            log.info("desk stopped")
        finally:
            server.stop()
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
