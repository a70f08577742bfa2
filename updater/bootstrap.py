"""The bootstrap: the host app's side of the Internet update (``opusi-update`` and this API).

Two steps, each usable from Python (:func:`check_for_updates`, :func:`start_update`) or from
any language through the command line (``opusi-update check``, ``opusi-update start``):

- **check** reads the install (``BUILD``, ``update.ini``), applies the vendor's rules (option
  ``[Allgemein] 52``, minimum build 1147; at start-up also option 53 and build 1190: the pure
  :func:`check_policy`), then asks the server through the same fetcher and signed metadata as
  the updater which builds are pending.
- **start** does the same checks, requires the host's confirmation that an administrator
  approved, downloads the newest updater for this platform into a folder *outside* the install,
  verifies its signed length and sha256 before it is ever run, starts it detached with
  ``--wait-pid`` and returns at once, so the host can exit and release its files.

Neither step writes into the install. The verified metadata of python-tuf needs a cache folder;
the updater keeps its own in the install's working folder (``SecuMax2/UpdateFiles/metadata``).
The bootstrap copies that cache (read only) into a temporary folder, refreshes it there and
throws it away: the install stays byte for byte unchanged, a running updater's cache is never
raced, and rollback protection still starts from what the updater last trusted.

Writes: a temporary metadata cache (deleted), and for ``start`` the updater executable and its
console output (``updater-output.log``) in the download folder, which is left for the updater.
Library functions raise the product's errors; only :func:`main` turns them into exit codes,
through :func:`updater.report.run_command`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updater import config, journal, system, trust
from updater.download import fetch_verified
from updater.errors import OpusiError, RefusedByPolicyError, ServerResponseError, exit_code_for
from updater.fetcher import Fetcher, NetworkSettings, disk_error
from updater.paths import WORK_DIR
from updater.plan import make_plan
from updater.report import ArgumentParser, run_command

log = logging.getLogger(__name__)

DEFAULT_MIN_BUILD = 1147
DEFAULT_MIN_BUILD_STARTUP = 1190
UPDATER_NAME = "opusi-INSTALLUpdate"
OUTPUT_LOG = "updater-output.log"
_NOTHING_CHANGED = "Nothing was changed."


@dataclass(frozen=True)
class CheckResult:
    """What a check found.

    Attributes:
        installed: The installed build.
        pending: The builds the updater would apply, ascending.
        target: The build the install has afterwards (``installed`` when nothing is pending).
        download_bytes: What the updater would download.
        updater_available: Whether the server offers an updater for this platform.
        interrupted: An interrupted update waits to be undone (the updater does it first).
    """

    installed: int
    pending: tuple[int, ...]
    target: int
    download_bytes: int
    updater_available: bool
    interrupted: bool = False

    @property
    def status(self) -> str:
        """``"pending"`` or ``"up-to-date"``."""
        return "pending" if self.pending else "up-to-date"


@dataclass(frozen=True)
class StartedUpdate:
    """An updater that was started and runs on its own."""

    pid: int
    updater: Path
    command: tuple[str, ...]
    output_log: Path | None = None


# --- the vendor's rules (pure) ------------------------------------------------------------------


def check_policy(
    install: config.Install, *, at_startup: bool = False,
    min_build: int = DEFAULT_MIN_BUILD, min_build_startup: int = DEFAULT_MIN_BUILD_STARTUP,
) -> None:
    """Refuse what the vendor's rules forbid: option 52 off, build too old; at start-up also
    option 53 off or build below the start-up minimum.

    Raises:
        RefusedByPolicyError: A rule forbids the update (code 24).
    """
    if not install.ini.option_52:
        raise RefusedByPolicyError(
            "Internet update is switched off: set option Allgemein 52 ([Allgemein] 52 = 1).",
            hint="An administrator can switch it on in opus i or in update.ini. "
            + _NOTHING_CHANGED,
        )
    if install.build < min_build:
        raise RefusedByPolicyError(
            f"The Internet update needs build {min_build} or newer; this installation has build "
            f"{install.build}.",
            hint=f"Install a current full version from the vendor first. {_NOTHING_CHANGED}",
        )
    if not at_startup:
        return
    if not install.ini.option_53:
        raise RefusedByPolicyError(
            "The check for updates at program start is switched off: set option Allgemein 53 "
            "([Allgemein] 53 = 1).",
            hint=f"An administrator can still check by hand. {_NOTHING_CHANGED}",
        )
    if install.build < min_build_startup:
        raise RefusedByPolicyError(
            f"The check for updates at program start needs build {min_build_startup} or newer; "
            f"this installation has build {install.build}.",
            hint=f"An administrator can check by hand (without --at-startup). {_NOTHING_CHANGED}",
        )


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (case-insensitive on Windows)."""
    def norm(p: Path) -> Path:
        return Path(os.path.normcase(p.resolve()))

    return norm(path).is_relative_to(norm(folder))


# --- server and signed metadata ---------------------------------------------------------------


@contextmanager
def _metadata_cache(install_root: Path) -> Iterator[Path]:
    """A throw-away copy of the updater's verified metadata cache (the install is only read)."""
    with tempfile.TemporaryDirectory(prefix="opusi-check-") as temp:
        cache = Path(temp) / "metadata"
        cache.mkdir()
        source = install_root / WORK_DIR / "metadata"
        for item in source.glob("*.json") if source.is_dir() else ():
            try:
                shutil.copyfile(item, cache / item.name)
            except OSError as e:  # an unreadable cache costs rollback protection, nothing else
                log.warning("cannot copy the cached metadata %s: %s", item, e)
        yield cache


def _read_view(install: config.Install, trusted_root: Path | None,
               proxy: str | None) -> tuple[trust.RepositoryView, Fetcher]:
    """Ask the server for the verified repository description, as the updater would.

    Raises:
        LicenseMissingError: No or a malformed license number (error 1, before any traffic).
        ConfigError: No server address or no trusted root.
        OpusiError: From the server and the trust layer (2, 6, 7, 12, 23).
    """
    settings = NetworkSettings(license_number=config.license_number(None, install.ini),
                               proxy_url=proxy or install.ini.proxy_url)
    server = config.server_url(None, install.ini)
    root = config.trusted_root(trusted_root)
    fetcher = Fetcher(settings)
    with _metadata_cache(install.root) as cache:
        return trust.read_view(server, cache, root, fetcher), fetcher


def check_for_updates(
    install_dir: Path, *, at_startup: bool = False, trusted_root: Path | None = None,
    min_build: int = DEFAULT_MIN_BUILD, min_build_startup: int = DEFAULT_MIN_BUILD_STARTUP,
    proxy: str | None = None, platform: str | None = None,
) -> CheckResult:
    """Tell which builds the install may get; never changes the install.

    Args:
        install_dir: The opus i program folder.
        at_startup: The host checks at program start (needs option 53 and build 1190).
        trusted_root: Root metadata to trust instead of the built-in one (tests).
        min_build: Oldest build the Internet update accepts.
        min_build_startup: Oldest build the start-up check accepts.
        proxy: Proxy URL; default: update.ini, else the environment.
        platform: Platform whose updater is looked for; default: this one.

    Raises:
        RefusedByPolicyError: Option 52/53 off or build too old (24), before any traffic.
        ConfigError: No install, no server address, no trusted root (11).
        LicenseMissingError, LicenseRefusedError, RegistrationMissingError: Errors 1, 2, 7.
        ConnectionFailedError: No connection (6).
        OpusiError: Untrusted metadata (12), no update path (21), odd server answers (23).
    """
    install = config.read_install(install_dir.resolve())
    check_policy(install, at_startup=at_startup, min_build=min_build,
                 min_build_startup=min_build_startup)
    view, _ = _read_view(install, trusted_root, proxy)
    plan = make_plan(install.build, view)
    return CheckResult(
        installed=install.build,
        pending=tuple(b.build for b in plan.builds),
        target=plan.target,
        download_bytes=plan.download_bytes,
        updater_available=view.updater_for(platform or system.platform_name()) is not None,
        interrupted=journal.read_journal(install.root) is not None,
    )


# --- start ----------------------------------------------------------------------------------------


def _refuse_folder_in_install(download_dir: Path | None, install_root: Path) -> None:
    """Refuse a download folder in the install (the default one lies in the temp dir).

    Raises:
        RefusedByPolicyError: The folder would lie inside the install.
    """
    base = download_dir if download_dir is not None else Path(tempfile.gettempdir())
    if _inside(base, install_root):
        raise RefusedByPolicyError(
            f"The updater may not be downloaded into the installation ({base.resolve()} lies in "
            f"{install_root}): it would stay behind among the program files.",
            hint=f"Choose a download folder outside the installation. {_NOTHING_CHANGED}",
        )


def _make_folder(download_dir: Path | None) -> Path:
    """``download_dir`` (created if missing), or a fresh private folder in the temp dir.

    Raises:
        DiskSpaceError, FileLockedError: It cannot be created.
    """
    try:
        if download_dir is None:
            return Path(tempfile.mkdtemp(prefix="opusi-update-"))
        download_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(e, download_dir or Path(tempfile.gettempdir())) from e
    return download_dir.resolve()


def updater_command(
    updater: Path, install_root: Path, host_pid: int, *, trusted_root: Path | None = None,
    proxy: str | None = None, extra_args: Sequence[str] = (),
) -> tuple[str, ...]:
    """The updater's command line; server and license it reads from update.ini itself."""
    command = [str(updater), "--install-dir", str(install_root), "--wait-pid", str(host_pid),
               "--yes", "--progress", "none"]
    if trusted_root is not None:
        command += ["--trusted-root", str(trusted_root.resolve())]
    if proxy:
        command += ["--proxy", proxy]
    return (*command, *extra_args)


def start_update(
    install_dir: Path, *, admin: bool, host_pid: int, trusted_root: Path | None = None,
    download_dir: Path | None = None, proxy: str | None = None, platform: str | None = None,
    extra_args: Sequence[str] = (), min_build: int = DEFAULT_MIN_BUILD,
) -> StartedUpdate:
    """Download, verify and start the newest updater; return as soon as it runs.

    Args:
        install_dir: The opus i program folder.
        admin: The host confirms that an administrator approved the update.
        host_pid: The host's process; the updater waits for it to exit.
        trusted_root: Root metadata to trust instead of the built-in one (tests); passed on.
        download_dir: Where the updater goes (outside the install); default: a fresh temp folder.
        proxy: Proxy URL; default: update.ini, else the environment. Passed on when given.
        platform: Which platform's updater to fetch; default: this one.
        extra_args: More arguments for the updater.
        min_build: Oldest build the Internet update accepts.

    Raises:
        RefusedByPolicyError: No admin approval, option 52 off, build too old, download folder
            inside the install, or the system refused to run the updater (24).
        ServerResponseError: No updater is published for the platform (23).
        PackageVerificationError: The updater does not match its signed hash (13); nothing ran.
        OpusiError: As :func:`check_for_updates`, from configuration, server and trust.
    """
    if not admin:
        raise RefusedByPolicyError(
            "The update was not approved: an administrator must approve the update in opus i.",
            hint="Log in to opus i as an administrator and start the update there. "
            + _NOTHING_CHANGED,
        )
    if host_pid <= 0:
        raise RefusedByPolicyError(f"The host's process id {host_pid} is not valid.")
    install = config.read_install(install_dir.resolve())
    check_policy(install, min_build=min_build)
    _refuse_folder_in_install(download_dir, install.root)
    view, fetcher = _read_view(install, trusted_root, proxy)
    remote = _updater_for(view, platform or system.platform_name())
    folder = _make_folder(download_dir)
    try:
        exe = folder / system.executable_name(UPDATER_NAME)
        fetch_verified(fetcher, remote.file, exe, None)
        if os.name == "posix":
            exe.chmod(0o755)
        command = updater_command(exe, install.root, host_pid, trusted_root=trusted_root,
                                  proxy=proxy, extra_args=extra_args)
        log.info("starting the updater %s (version %s) for process %d",
                 exe, remote.version, host_pid)
        pid, output = spawn_detached(command, folder)
    except BaseException:
        if download_dir is None:  # our own fresh folder: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return StartedUpdate(pid=pid, updater=exe, command=command, output_log=output)


def _updater_for(view: trust.RepositoryView, platform: str) -> trust.RemoteUpdater:
    """The signed updater for ``platform``.

    Raises:
        ServerResponseError: None is published for it (23).
    """
    remote = view.updater_for(platform)
    if remote is None:
        offered = ", ".join(sorted(u.platform for u in view.updaters)) or "none"
        raise ServerResponseError(
            f"The update server offers no updater for this platform ({platform}; "
            f"offered: {offered}).",
            hint=f"Please tell the vendor. {_NOTHING_CHANGED}",
        )
    return remote


# --- the OS seam: a detached process ----------------------------------------------------------


def spawn_detached(command: Sequence[str], folder: Path) -> tuple[int, Path | None]:
    """Start ``command`` so it outlives this process and the host; return at once.

    POSIX: a new session (no controlling terminal, no signals from the host's process group),
    stdin from ``/dev/null``, stdout and stderr into ``folder/updater-output.log``. Windows
    (confirmed only there): ``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP``, no console
    handles; if Windows demands elevation (the updater's manifest asks for administrator
    rights, error 740), it is started through ``ShellExecuteExW`` with the ``runas`` verb,
    which shows the UAC prompt.

    Returns:
        The process id and the output log (None on Windows: the updater logs into the install).

    Raises:
        RefusedByPolicyError: The system refused to run the program (noexec, AppLocker, ...).
    """
    try:
        if sys.platform == "win32":  # pragma: no cover - only Windows runs this
            return _spawn_windows(command, folder), None
        output = folder / OUTPUT_LOG
        with output.open("ab") as handle:
            process = subprocess.Popen(
                list(command), cwd=folder, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        return process.pid, output
    except OSError as e:
        raise RefusedByPolicyError(
            f"The system refused to start the downloaded updater {command[0]}: {e}.",
            hint="If the temp folder may not run programs, pass --download-dir with one that may. "
            + _NOTHING_CHANGED,
        ) from e


if sys.platform == "win32":  # pragma: no cover - only Windows runs this block
    import ctypes
    from ctypes import wintypes

    _ERROR_ELEVATION_REQUIRED = 740
    _SEE_MASK_NOCLOSEPROCESS = 0x40
    _SW_SHOWNORMAL = 1

    class _ShellExecuteInfo(ctypes.Structure):
        _fields_ = [
            ("cbSize", wintypes.DWORD), ("fMask", ctypes.c_ulong), ("hwnd", wintypes.HWND),
            ("lpVerb", wintypes.LPCWSTR), ("lpFile", wintypes.LPCWSTR),
            ("lpParameters", wintypes.LPCWSTR), ("lpDirectory", wintypes.LPCWSTR),
            ("nShow", ctypes.c_int), ("hInstApp", wintypes.HINSTANCE),
            ("lpIDList", ctypes.c_void_p), ("lpClass", wintypes.LPCWSTR),
            ("hkeyClass", wintypes.HKEY), ("dwHotKey", wintypes.DWORD),
            ("hIconOrMonitor", wintypes.HANDLE), ("hProcess", wintypes.HANDLE),
        ]

    def _spawn_windows(command: Sequence[str], folder: Path) -> int:
        flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            process = subprocess.Popen(
                list(command), cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, creationflags=flags, close_fds=True,
            )
        except OSError as e:
            if getattr(e, "winerror", None) != _ERROR_ELEVATION_REQUIRED:
                raise
            return _spawn_elevated(command, folder)
        return process.pid

    def _spawn_elevated(command: Sequence[str], folder: Path) -> int:
        info = _ShellExecuteInfo()
        info.cbSize = ctypes.sizeof(info)
        info.fMask = _SEE_MASK_NOCLOSEPROCESS
        info.lpVerb, info.lpFile = "runas", command[0]
        info.lpParameters = subprocess.list2cmdline(list(command[1:]))
        info.lpDirectory, info.nShow = str(folder), _SW_SHOWNORMAL
        shell32 = ctypes.WinDLL("shell32", use_last_error=True)
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        if not shell32.ShellExecuteExW(ctypes.byref(info)):
            raise ctypes.WinError(ctypes.get_last_error())  # 1223: the user declined UAC
        try:
            return int(kernel32.GetProcessId(info.hProcess))
        finally:
            kernel32.CloseHandle(info.hProcess)


# --- command line -------------------------------------------------------------------------------


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="opusi-update",
                       description="The host app's side of the opus i Internet update. Prints one "
                       "JSON object on stdout; the exit code is 0 or the error's code.")
    commands = p.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="report pending builds or why the update is refused")
    check.add_argument("--at-startup", action="store_true",
                       help="the check at program start (needs option 53 and a newer build)")
    check.add_argument("--min-build-startup", type=int, default=DEFAULT_MIN_BUILD_STARTUP,
                       help="oldest build for the start-up check (default %(default)s)")
    start = commands.add_parser("start",
                                help="download, verify and start the updater; return at once")
    start.add_argument("--admin", action="store_true",
                       help="the host confirms that an administrator approved the update")
    start.add_argument("--host-pid", type=int, required=True, help="the host's process id")
    start.add_argument("--download-dir", type=Path,
                       help="folder for the updater, outside the install "
                       "(default: a new temporary folder)")
    for sub in (check, start):
        sub.add_argument("--install-dir", type=Path, required=True,
                         help="the opus i program folder")
        sub.add_argument("--trusted-root", type=Path,
                         help="trusted root metadata (default: built in)")
        sub.add_argument("--proxy",
                         help="proxy URL (default: update.ini, else HTTPS_PROXY/HTTP_PROXY)")
        sub.add_argument("--min-build", type=int, default=DEFAULT_MIN_BUILD,
                         help="oldest build the Internet update accepts (default %(default)s)")
        sub.add_argument("--platform", help="platform of the updater (default: this one)")
        sub.add_argument("-v", "--verbose", action="store_true", help="log details on stderr")
    return p


def _run_check(args: argparse.Namespace) -> dict[str, Any]:
    result = check_for_updates(
        args.install_dir, at_startup=args.at_startup, trusted_root=args.trusted_root,
        min_build=args.min_build, min_build_startup=args.min_build_startup, proxy=args.proxy,
        platform=args.platform,
    )
    return {"status": result.status, "installed": result.installed, "pending": list(result.pending),
            "target": result.target, "download_bytes": result.download_bytes,
            "updater_available": result.updater_available, "interrupted": result.interrupted}


def _run_start(args: argparse.Namespace) -> dict[str, Any]:
    started = start_update(
        args.install_dir, admin=args.admin, host_pid=args.host_pid, trusted_root=args.trusted_root,
        download_dir=args.download_dir, proxy=args.proxy, platform=args.platform,
        min_build=args.min_build,
    )
    return {"status": "started", "pid": started.pid, "updater": str(started.updater),
            "log": str(started.output_log) if started.output_log else None}


def error_json(error: BaseException) -> dict[str, Any]:
    """The JSON object a failed command prints: status, code, message (and hint)."""
    refused = isinstance(error, RefusedByPolicyError)
    if isinstance(error, OpusiError):
        message, hint = error.message, error.hint
    else:
        message, hint = f"internal error ({type(error).__name__}: {error})", ""
    return {"status": "refused" if refused else "error", "code": exit_code_for(error),
            "message": message, "hint": hint}


def _work(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        root = logging.getLogger()
        if args.verbose:
            root.setLevel(logging.DEBUG)
            root.addHandler(logging.StreamHandler(sys.stderr))
        elif not root.handlers:
            root.addHandler(logging.NullHandler())  # run_command prints the error itself
        payload = _run_check(args) if args.command == "check" else _run_start(args)
    except Exception as e:
        # One JSON object on stdout for the host, also on failure; run_command then prints
        # the human message on stderr and returns the code.
        print(json.dumps(error_json(e)), flush=True)
        raise
    print(json.dumps(payload), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opusi-update``.

    Exit codes: 0 success (``check``: pending or up to date, see ``status``; ``start``: the
    updater runs), 24 refused by a rule (option 52/53, build, no admin approval, download folder
    in the install), 1/2/7 license, 6 no connection, 10 wrong arguments, 11 install or
    configuration, 12 untrusted metadata, 13 updater failed verification, 21 no update path,
    23 no updater for this platform or an odd server answer.
    """
    return run_command(_work, argv)


if __name__ == "__main__":
    sys.exit(main())
