"""Debian's PostgreSQL on 127.0.0.1, a cluster of the test's own: made with ``initdb``, started
and stopped (and restarted) by the test. Never the machine's own cluster.

PostgreSQL refuses to run as root; as root, the cluster belongs to ``nobody`` and its programs
run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import free_port


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (newest version), if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


@dataclass
class Postgres:
    """A running PostgreSQL cluster with one database, ``opusi``, owned by user ``opusi``."""

    bin: Path
    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _as: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"postgresql://opusi@127.0.0.1:{self.port}/opusi"

    @property
    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def start(self) -> None:
        """Start the server and wait until it accepts connections (up to 30 s)."""
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the server keeps it
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, **self._as)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres stopped at start:\n{self.log[-3000:]}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True, check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections in 30 s:\n{self.log[-3000:]}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (SIGINT: ends every session) or ``immediate`` (SIGQUIT)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal({"fast": 2, "immediate": 3}[mode])
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def psql(self, sql: str) -> str:
        """Run ``sql`` as the database's owner; return what psql printed."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "opusi",
             "-d", "opusi", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        return done.stdout


@contextmanager
def running() -> Iterator[Postgres]:
    """A new cluster on a free loopback port with database ``opusi``; removed at the end."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/test installs it with apt-get)")
    # its own folder outside pytest's (whose parents are private to root)
    base = Path(tempfile.mkdtemp(prefix="opusi-pg-"))
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(base / "data"), "-U", "opusi", "--auth=trust",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True, check=True, **run_as)
    pg = Postgres(binaries, base, free_port(), _as=run_as)
    try:
        pg.start()
        subprocess.run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "opusi",
             "opusi"], capture_output=True, check=True)
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
