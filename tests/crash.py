"""Helpers for the crash suite: the real updater in a subprocess, killed at a chosen moment.

``OPUSI_KILL_AT=K`` (see :mod:`updater.shared.fileops`) makes the updater SIGKILL itself right before
its file operation K. Run as ``python -m tests.crash OPS_FILE ARGS...``, this module runs the
updater's command line and writes the list of file operations it performed (one per line) to
``OPS_FILE``, so a test can learn where the moments worth killing at are. A trickling relay
slows a package download down enough to kill the process in the middle of it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = -getattr(signal, "SIGKILL", signal.SIGTERM)


def updater_args(install: Path, trusted_root: Path, *extra: str) -> list[str]:
    """The updater's flags for an unattended run against ``install``."""
    return ["--install-dir", str(install), "--trusted-root", str(trusted_root), "--yes",
            "--progress", "none", "--timeout", "5", *extra]


def run_updater(install: Path, trusted_root: Path, *extra: str, kill_at: int | None = None,
                fault: str | None = None, ops_file: Path | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the updater as its own process; ``kill_at``/``fault`` switch on the fileops seams.

    With ``ops_file``, the run goes through this module's ``__main__``, which records every file
    operation into that file.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OPUSI_KILL_AT", "OPUSI_FAULT_PLAN")}
    if kill_at is not None:
        env["OPUSI_KILL_AT"] = str(kill_at)
    if fault is not None:
        env["OPUSI_FAULT_PLAN"] = fault
    elif ops_file is not None:
        env["OPUSI_FAULT_PLAN"] = "count:0"
    head = (["-m", "tests.crash", str(ops_file)] if ops_file is not None
            else ["-m", "updater.install.cli"])
    return subprocess.run([sys.executable, *head, *updater_args(install, trusted_root, *extra)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def spread(ops: Sequence[str], every: int = 8) -> list[int]:
    """The moments (1-based operation numbers) worth killing at.

    Every operation that differs from the one before or after it (so each kind of step, and
    the first and last of a run of like operations), plus every ``every``-th of a long run of
    like operations (the chunks of the backup zip).
    """
    chosen = []
    for k in range(1, len(ops) + 1):
        before = ops[k - 2] if k > 1 else None
        after = ops[k] if k < len(ops) else None
        if before != ops[k - 1] or after != ops[k - 1] or k % every == 0:
            chosen.append(k)
    return chosen


@dataclass
class TrickleRelay:
    """A TCP relay in front of ``upstream`` that passes answers on in small, slow pieces."""

    upstream: tuple[str, int]
    piece: int = 512
    pause: float = 0.01
    _sockets: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            self._sockets += [client, server]
            for args in ((client, server, 65536, 0.0), (server, client, self.piece, self.pause)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, piece: int, pause: float) -> None:
        try:
            while data := src.recv(piece):
                dst.sendall(data)
                time.sleep(pause)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        for sock in (self._listener, *self._sockets):
            sock.close()


def _main(argv: Sequence[str]) -> int:
    from updater.install import cli
    from updater.shared import fileops

    code = cli.main(argv[1:])
    seen = fileops._plan.seen if fileops._plan is not None else []  # noqa: SLF001 (test seam)
    Path(argv[0]).write_text("\n".join(seen) + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
