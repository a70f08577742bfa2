"""A real forward proxy for tests: Debian's tinyproxy, on 127.0.0.1, in the foreground.

:func:`start_tinyproxy` writes a config into a temporary folder (tinyproxy cannot take port 0,
so a free port is picked first), starts ``tinyproxy -d -c <conf>``, waits until the port
accepts, and returns a :class:`Tinyproxy` whose log the tests read to see that requests went
through it. Tests skip when tinyproxy is not installed (``scripts/test`` installs it when it may).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop_process

TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").is_file() else None
)


@dataclass
class Tinyproxy:
    """A running tinyproxy: its port, log, and process."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def log_file(self) -> Path:
        return self.folder / "tinyproxy.log"

    def url(self, auth: str = "") -> str:
        """``http://[auth@]127.0.0.1:port``; ``auth`` must already be percent-encoded."""
        return f"http://{auth + '@' if auth else ''}127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text("utf-8", errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_process(self.process)


def _config(folder: Path, port: int, connect_ports: list[int], auth: tuple[str, str] | None) -> str:
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        "Timeout 30",
        "MaxClients 20",
        f'LogFile "{folder / "tinyproxy.log"}"',
        "LogLevel Info",
        f'PidFile "{folder / "tinyproxy.pid"}"',
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if auth:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    return "\n".join(lines) + "\n"


def start_tinyproxy(
    folder: Path, connect_ports: list[int], auth: tuple[str, str] | None = None
) -> Tinyproxy:
    """Start tinyproxy on a free 127.0.0.1 port; skip the test if it is not installed.

    Args:
        folder: An empty folder for its config, log and pid file.
        connect_ports: Ports CONNECT (https tunnels) may reach.
        auth: (user, password) for Basic authentication, or None.
    """
    if TINYPROXY is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy; scripts/test does it "
                    "when it may)")
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        port = free_port()
        conf = folder / "tinyproxy.conf"
        conf.write_text(_config(folder, port, connect_ports, auth))
        process = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        proxy = Tinyproxy(port, folder, process)
        if _wait_accepting(port, process):
            return proxy
        proxy.stop()
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if attempt == 4:
            raise RuntimeError(f"tinyproxy did not start: {error}\n{proxy.log()}")
    raise AssertionError("unreachable")


def _wait_accepting(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
