"""Small helpers for the helper processes of tests, the fault suite and the benchmark."""

from __future__ import annotations

import socket
import subprocess
from typing import Any


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Ask ``proc`` to end (SIGTERM), wait up to ``timeout`` seconds, then kill it."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
