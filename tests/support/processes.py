"""Small helpers for the helper processes of tests, the fault suite and the benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Proxy settings are dropped from a helper's environment: all traffic stays on 127.0.0.1.
NO_PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY")


def clean_env() -> dict[str, str]:
    """This process's environment without proxy settings: all traffic stays on 127.0.0.1."""
    return {k: v for k, v in os.environ.items() if k not in NO_PROXY_ENV}


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


@contextmanager
def serve_process(repo: Path, db: Path | str, stderr_log: Path,
                  request_log: Path | None = None) -> Iterator[tuple[str, int]]:
    """``opusi-repo serve`` as its own process on a free loopback port, as a vendor runs it
    (default threads); yields its URL and process id, stops it at the end."""
    command = [str(Path(sys.executable).parent / "opusi-repo"), "serve", "--repo", str(repo),
               "--db", str(db), "--bind", "127.0.0.1:0"]
    if request_log is not None:
        command += ["--request-log", str(request_log)]
    with stderr_log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=clean_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving REPO on 127.0.0.1:PORT"
        port = line.rstrip().rpartition(":")[2]
        if not port.isdigit():
            raise RuntimeError(f"the server did not start: {line!r}; see {stderr_log}")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop_process(proc, 30)
