"""The environment fails the updater: server down, line cut, proxy refusing, disk full, ...

Each case runs the updater on its own install against its own copy of the vendor's repository
and license registry (see :mod:`tests.faults.metadata`), so the suite's vendor is never changed.

Cases: the server down (a closed port); the connection cut in the middle of a package, then the
download resumed by the next run; a real tinyproxy refusing wrong credentials, refusing this
client, and a proxy on a closed port; the disk full (a small tmpfs mounted for the case): before
the run (pre-flight), and filled up after pre-flight (during the downloads or the backup, and
during the apply); a program file that cannot be replaced (``chattr +i``), and an immutable
folder a build adds to; the host program that never exits; a second updater on the same
install, held by a lock and started while a real one runs; a license revoked between the check
and the update. Cases that need what this machine lacks (tinyproxy, mounting, ``chattr``) are
left out with a printed reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from tests.conftest import LICENSE, make_install
from tests.faults import Outcome, Suite
from tests.faults.metadata import (
    BOUND,
    Case,
    Served,
    checked,
    error_message,
    new_install,
    precondition_failed,
    run_case,
    run_cases,
    served_copy,
    target_path,
    unique_folder,
)
from tests.support.crash import TrickleRelay
from tests.support.processes import free_port, stop_process
from tests.support.proxies import TINYPROXY
from tests.support.relay import Relay
from updater.core.paths import WORK_DIR
from updater.core.protocol import LICENSE_HEADER
from updater.install.backup.writer import ensure_backup
from updater.install.preflight import LOCK_NAME
from updater.publisher.licenses import open_registry

KLASS = "environment"
_PAGE = 4096


def skipped(case: str, why: str) -> list[Outcome]:
    """No outcome for a case this machine cannot run; say why on the console."""
    print(f"[environment] skipped: {case}: {why}", file=sys.stderr)
    return []


# --- the network -----------------------------------------------------------------------------


def server_down(suite: Suite) -> list[Outcome]:
    folder = unique_folder(suite, "down")
    url = f"http://127.0.0.1:{free_port()}"
    install = new_install(suite, folder, url)
    return [run_case(suite, KLASS, "server down (a closed port)", install, url, (6,))]


def reset_then_resume(suite: Suite) -> list[Outcome]:
    """The line drops in the middle of package 1148; the next run resumes it and completes."""
    with served_copy(suite, "reset") as served:
        port = int(served.url.rsplit(":", 1)[1])
        cutting = Relay(("127.0.0.1", port), cut_package_after=_middle_of_package(served, 1148))
        install = new_install(suite, served.folder, served.url)
        try:
            first = run_case(
                suite,
                KLASS,
                "connection reset in the middle of a package",
                install,
                f"http://127.0.0.1:{cutting.port}",
                (6,),
                nothing_written=False,
            )
        finally:
            cutting.close()
        if cutting.cuts != 1:
            first = replace(first, code_ok=False, detail=f"{first.detail}: the relay never cut")
        parts = list((install / WORK_DIR / "downloads").glob("*.part"))
        clean = Relay(("127.0.0.1", port))
        try:
            second = run_case(
                suite,
                KLASS,
                "then the next run resumes the download and completes",
                install,
                f"http://127.0.0.1:{clean.port}",
                (0,),
                builds=(1155,),
                nothing_written=False,
            )
        finally:
            clean.close()
        ranged = [r for r in clean.requests() if "\r\nrange: bytes=" in r.lower()]
        if not parts or not ranged:
            second = replace(
                second,
                code_ok=False,
                detail=f"{second.detail}: not resumed ({len(parts)} .part files kept, "
                f"{len(ranged)} Range requests)",
            )
        else:
            second = replace(second, detail=f"{second.detail}, resumed with {len(ranged)} Range")
        return [first, second]


def _middle_of_package(served: Served, build: int) -> int:
    """Bytes of the answer for ``build``'s package up to the middle of its body."""
    path = "/" + target_path(served, build).relative_to(served.repo).as_posix()
    host, port = served.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{LICENSE_HEADER}: {LICENSE}\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    return len(head) + 4 + len(body) // 2


@contextlib.contextmanager
def tinyproxy(folder: Path, allow: str, auth: tuple[str, str] | None) -> Iterator[int]:
    """A real tinyproxy on 127.0.0.1 allowing ``allow`` only; yields its port."""
    assert TINYPROXY is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Allow {allow}",
        "Timeout 30",
        f'LogFile "{folder / "tinyproxy.log"}"',
        "LogLevel Info",
        f'PidFile "{folder / "tinyproxy.pid"}"',
    ]
    if auth:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    (folder / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [TINYPROXY, "-d", "-c", str(folder / "tinyproxy.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.05)
        yield port
    finally:
        stop_process(process)


def _proxy_case(case: str, allow: str, auth: tuple[str, str] | None, proxy_auth: str) -> Case:
    def run(suite: Suite) -> list[Outcome]:
        if TINYPROXY is None:
            return skipped(case, "tinyproxy is not installed (apt-get install tinyproxy)")
        with served_copy(suite, "proxy") as served:
            install = new_install(suite, served.folder, served.url)
            with tinyproxy(served.folder / "tinyproxy", allow, auth) as port:
                proxy = f"http://{proxy_auth}127.0.0.1:{port}"
                return [
                    run_case(suite, KLASS, case, install, served.url, (6,), args=("--proxy", proxy))
                ]

    return run


def proxy_closed_port(suite: Suite) -> list[Outcome]:
    with served_copy(suite, "proxy-down") as served:
        install = new_install(suite, served.folder, served.url)
        proxy = f"http://127.0.0.1:{free_port()}"
        return [
            run_case(
                suite,
                KLASS,
                "proxy on a closed port",
                install,
                served.url,
                (6,),
                args=("--proxy", proxy),
            )
        ]


# --- the disk --------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path | None]:
    """A tmpfs of ``megabytes`` mounted at ``folder/mnt`` (None: mounting is not allowed)."""
    mnt = folder / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"[environment] mount failed: {done.stderr.strip()}", file=sys.stderr)
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _can_mount() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs needs root and mount(8)"
    return None


def fill(disk: Path, keep_pages: int) -> int:
    """Fill the file system of ``disk`` until ``keep_pages`` pages are free; return bytes used."""
    stat = os.statvfs(disk)
    size = max(0, (stat.f_bavail - keep_pages) * stat.f_frsize)
    with (disk / "filler").open("wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, max(size, 1))
    return size


def disk_full_before(suite: Suite) -> list[Outcome]:
    """A 30 MB disk: too small for backup, downloads and the margin; refused in pre-flight."""
    case = "disk full: a 30 MB tmpfs, refused in pre-flight"
    if why := _can_mount():
        return skipped(case, why)
    with served_copy(suite, "disk-before") as served, small_disk(served.folder, 30) as mnt:
        if mnt is None:
            return skipped(case, "mount -t tmpfs was refused")
        install = make_install(mnt / "opusi", suite.vendor.trees[1147], 1147, served.url)
        outcome = run_case(suite, KLASS, case, install, served.url, (14,))
        backups = list((install / "Database/SystemFiles/Backups").glob("*.zip"))
        downloads = list((install / WORK_DIR / "downloads").glob("*"))
        if backups or downloads:
            outcome = replace(
                outcome, consistent=False, detail=f"{outcome.detail}: {backups + downloads}"
            )
        return [outcome]


class FillingRelay(Relay):
    """A relay that fills the disk when the first request for a target (a package) passes."""

    def __init__(self, upstream: tuple[str, int], action: Callable[[], None]) -> None:
        self.action: Callable[[], None] | None = action
        super().__init__(upstream)

    def _pump_requests(
        self, src: socket.socket, dst: socket.socket, state: dict[str, object]
    ) -> None:
        while data := _recv(src):
            if self.action is not None and b" /targets/" in data:
                action, self.action = self.action, None
                action()
            with self._lock:
                self.sent.append(data)
            with contextlib.suppress(OSError):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _target_pages(served_repo: Path) -> int:
    """Pages the downloads of every build after 1147 take (packages and manifests)."""
    total = 0
    for path in (served_repo / "targets").glob("*/*.*"):
        build = path.name.split(".")[1]
        if path.parent.name in ("builds", "manifests") and build.isdigit() and int(build) > 1147:
            total += -(-path.stat().st_size // _PAGE)
    return total


def _disk_fills(case: str, with_backup: bool, codes: Sequence[int]) -> Case:
    """The disk passes pre-flight, then fills up when the downloads begin.

    The filler leaves room for the downloads (and a page or two of slack); without a current
    backup the backup zip no longer fits; with one (made beforehand), the apply's staging does.
    """

    def run(suite: Suite) -> list[Outcome]:
        if why := _can_mount():
            return skipped(case, why)
        with served_copy(suite, "disk-fills") as served, small_disk(served.folder, 80) as mnt:
            if mnt is None:
                return skipped(case, "mount -t tmpfs was refused")
            install = make_install(mnt / "opusi", suite.vendor.trees[1147], 1147, served.url)
            if with_backup:
                ensure_backup(install, 1147)
            keep = _target_pages(served.repo) + 2
            filled: list[int] = []
            port = int(served.url.rsplit(":", 1)[1])
            relay = FillingRelay(("127.0.0.1", port), lambda: filled.append(fill(mnt, keep)))
            try:
                outcome = run_case(
                    suite,
                    KLASS,
                    case,
                    install,
                    f"http://127.0.0.1:{relay.port}",
                    codes,
                    nothing_written=False,
                )
            finally:
                relay.close()
            if not filled:
                outcome = replace(outcome, code_ok=False, detail=f"{outcome.detail}: not filled")
            return [outcome]

    return run


# --- files and processes -----------------------------------------------------------------------


def _chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def immutable(case: str, relative: str) -> Case:
    """``chattr +i`` on a program file (or folder) that build 1148 changes (or adds to)."""

    def run(suite: Suite) -> list[Outcome]:
        if shutil.which("chattr") is None:
            return skipped(case, "chattr is not installed")
        with served_copy(suite, "immutable") as served:
            install = new_install(suite, served.folder, served.url)
            target = install / relative
            if not _chattr(target, "+i"):
                return skipped(case, f"chattr +i is not supported on {served.folder}")
            try:
                return [
                    run_case(suite, KLASS, case, install, served.url, (16,), nothing_written=False)
                ]
            finally:
                _chattr(target, "-i")

    return run


def host_never_exits(suite: Suite) -> list[Outcome]:
    folder = unique_folder(suite, "host")
    install = new_install(suite, folder, suite.url)
    host = subprocess.Popen(["sleep", "60"])
    try:
        return [
            run_case(
                suite,
                KLASS,
                "the host program never exits (--wait-pid, --wait-timeout 2)",
                install,
                suite.url,
                (19,),
                args=("--wait-pid", str(host.pid), "--wait-timeout", "2"),
            )
        ]
    finally:
        host.kill()
        host.wait()


_HOLD_LOCK = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def lock_held(suite: Suite) -> list[Outcome]:
    """Another process holds the install's update lock."""
    folder = unique_folder(suite, "lock")
    install = new_install(suite, folder, suite.url)
    (install / WORK_DIR).mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(install / WORK_DIR / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return [
            run_case(
                suite,
                KLASS,
                "a second updater: the install's lock is held by another process",
                install,
                suite.url,
                (18,),
            )
        ]
    finally:
        holder.kill()
        holder.wait()


def two_updaters(suite: Suite) -> list[Outcome]:
    """Two real updaters on one install, the first slowed down: one updates, the other gets 18."""
    case = "a second updater started while a (slowed) first one runs"
    folder = unique_folder(suite, "two")
    install = new_install(suite, folder, suite.url)
    port = int(suite.url.rsplit(":", 1)[1])
    slow = TrickleRelay(("127.0.0.1", port), piece=256, pause=0.05)
    command = [
        *suite.updater,
        "--install-dir",
        str(install),
        "--trusted-root",
        str(suite.vendor.root_file),
        "--yes",
        "--progress",
        "none",
        "--timeout",
        "5",
        "--server",
    ]
    from tests.faults import Before, outcome

    before = Before.of(install)
    try:
        first = subprocess.Popen(
            [*command, f"http://127.0.0.1:{slow.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        started = time.monotonic()
        second = suite.run(install, "--server", suite.url)
        elapsed = time.monotonic() - started
        out, err = first.communicate(timeout=120)
    finally:
        slow.close()
    codes = sorted([first.returncode, second.returncode])
    judged = outcome(
        KLASS,
        f"{case} (0 and 18, <= {BOUND:.0f} s)",
        install,
        suite.vendor,
        before,
        18 if codes == [0, 18] else codes[-1],
        (18,),
        builds=(1155,),
    )
    detail = f"first exit {first.returncode}, second exit {second.returncode} in {elapsed:.1f} s"
    if second.returncode == 18:
        detail += f": {error_message(second.stderr)}"
    elif first.returncode != 0:
        detail += f": {err.strip()[-300:]}"
    ok = judged.code_ok and elapsed <= BOUND
    return [replace(judged, code_ok=ok, detail=f"{judged.detail}; {detail}")]


def revoked_between(suite: Suite) -> list[Outcome]:
    """``--check`` succeeds; the vendor revokes the license; the update is refused (2)."""
    case = "license revoked between --check and the update"
    with served_copy(suite, "revoked") as served:
        install = new_install(suite, served.folder, served.url)
        if why := checked(suite, install, served.url):
            return [precondition_failed(case, why)]
        with open_registry(served.db) as registry:
            registry.revoke(LICENSE)
        result = run_case(suite, KLASS, case, install, served.url, (2,))
        return [replace(result, klass=KLASS)]


# --- the class --------------------------------------------------------------------------------

QUICK: tuple[Case, ...] = (
    server_down,
    reset_then_resume,
    _proxy_case(
        "tinyproxy refuses wrong credentials", "127.0.0.1", ("opusi", "s3cret"), "opusi:wrong@"
    ),
    _proxy_case("tinyproxy refuses this client (Allow 10.9.9.9 only)", "10.9.9.9", None, ""),
    proxy_closed_port,
    disk_full_before,
    _disk_fills("disk full: fills up after pre-flight, no current backup", False, (14,)),
    _disk_fills("disk full: fills up after pre-flight, current backup reused", True, (14, 16)),
    immutable("a program file build 1148 replaces is immutable (chattr +i opusi.exe)", "opusi.exe"),
    host_never_exits,
    lock_held,
    two_updaters,
    revoked_between,
)
FULL: tuple[Case, ...] = (
    *QUICK,
    _proxy_case("tinyproxy requires credentials, none given", "127.0.0.1", ("opusi", "s3cret"), ""),
    immutable(
        "a folder build 1148 adds to is immutable (chattr +i Program/Module)", "Program/Module"
    ),
)


def run(suite: Suite) -> list[Outcome]:
    """Every environment case this machine can run (a subset in quick mode)."""
    return run_cases(suite, QUICK if suite.quick else FULL)
