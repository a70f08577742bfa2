"""Helpers for the crash suite: the real updater in a subprocess, killed at a chosen moment.

The updater's test hook (:mod:`updater.install.testhooks`) does the killing: ``OPUSI_KILL_AT=ID``
makes it SIGKILL itself right before its file operation ``ID`` (``lane#number``), and
``OPUSI_OPS_FILE`` makes it write down every operation of a run, so a test can learn where the
moments worth killing at are (:func:`read_ops`). A trickling relay slows a package download down
enough to kill the process in the middle of it.
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

from updater.install.testhooks import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
KILLED = -getattr(signal, "SIGKILL", signal.SIGTERM)


def updater_args(install: Path, trusted_root: Path, *extra: str) -> list[str]:
    """The updater's flags for an unattended run against ``install``."""
    return ["--install-dir", str(install), "--trusted-root", str(trusted_root), "--yes",
            "--progress", "none", "--timeout", "5", *extra]


def hook_env(kill_at: str | None = None, fault: str | None = None,
             ops_file: Path | None = None) -> dict[str, str]:
    """This process's environment without the test hook's variables, plus the ones asked for.

    Args:
        kill_at: The operation (``lane#number``) to kill the updater before.
        fault: ``once:ID`` or ``from:ID``: the operation to fail (and every one after it).
        ops_file: Where the updater writes down its operations.
    """
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    for name, value in (("OPUSI_KILL_AT", kill_at), ("OPUSI_FAULT_PLAN", fault),
                        ("OPUSI_OPS_FILE", ops_file)):
        if value is not None:
            env[name] = str(value)
    return env


def run_updater(install: Path, trusted_root: Path, *extra: str, kill_at: str | None = None,
                fault: str | None = None, ops_file: Path | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the updater from source as its own process, the test hook switched on as asked."""
    command = [sys.executable, "-m", "updater.install.cli",
               *updater_args(install, trusted_root, *extra)]
    return subprocess.run(command, cwd=ROOT, env=hook_env(kill_at, fault, ops_file),
                          capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Ops:
    """A run's file operations as the test hook wrote them down, in the order they happened.

    Attributes:
        ids: Each operation's identity (``lane#number``), the same in every run of the update.
        ops: Each operation as ``"<kind> <path in the install>"``.
    """

    ids: tuple[str, ...]
    ops: tuple[str, ...]

    def ident(self, k: int) -> str:
        """The identity of the k-th operation (from 1)."""
        return self.ids[k - 1]

    def number(self, op: str) -> int:
        """The number (from 1) of ``op`` (``"<kind> <path in the install>"``)."""
        return self.ops.index(op) + 1

    def beyond(self) -> str:
        """An identity no operation of the run has (the main lane's next number)."""
        return f"main#{sum(1 for i in self.ids if i.startswith('main#')) + 1}"


def read_ops(ops_file: Path, install: Path) -> Ops:
    """The operations the updater wrote to ``ops_file``, paths relative to ``install``."""
    prefix = install.as_posix()
    ids, ops = [], []
    for line in ops_file.read_text("utf-8").splitlines():
        ident, rest = line.split(" ", 1)
        ids.append(ident)
        ops.append(rest.replace(prefix + "/", "").replace(prefix, "."))
    return Ops(tuple(ids), tuple(ops))


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
