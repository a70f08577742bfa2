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
through :func:`updater.core.report.run_command`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from updater.bootstrap.policy import (
    DEFAULT_MIN_BUILD,
    DEFAULT_MIN_BUILD_STARTUP,
    check_policy,
)
from updater.bootstrap.spawn import spawn_detached
from updater.core.builds import RemoteUpdater, RepositoryView
from updater.core.errors import RefusedByPolicyError, ServerResponseError, error_from_os
from updater.core.i18n import _
from updater.core.install import Install
from updater.core.paths import JOURNAL_FILE, WORK_DIR
from updater.core.plan import make_plan
from updater.core.rollout import Client
from updater.shared import config, installs, system, trust
from updater.shared.download import fetch_verified
from updater.shared.transport import Fetcher, NetworkSettings

log = logging.getLogger(__name__)

UPDATER_NAME = "opusi-INSTALLUpdate"


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
        withdrawn: Builds newer than the target that the vendor withdrew: (build, reason).
        held_back: Newer builds in a staged rollout that does not include this install yet.
    """

    installed: int
    pending: tuple[int, ...]
    target: int
    download_bytes: int
    updater_available: bool
    interrupted: bool = False
    withdrawn: tuple[tuple[int, str], ...] = ()
    held_back: tuple[int, ...] = ()

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


def _read_view(install: Install, trusted_root: Path | None,
               proxy: str | None) -> tuple[RepositoryView, Fetcher]:
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
    installs.record(install.root, "bootstrap check")
    check_policy(install, at_startup=at_startup, min_build=min_build,
                 min_build_startup=min_build_startup)
    view, _ = _read_view(install, trusted_root, proxy)
    plan = make_plan(install.build, view, Client(install.ini.license_number, install.ini.channel))
    return CheckResult(
        installed=install.build,
        pending=tuple(b.build for b in plan.builds),
        target=plan.target,
        download_bytes=plan.download_bytes,
        updater_available=view.updater_for(platform or system.platform_name()) is not None,
        interrupted=(install.root / JOURNAL_FILE).exists(),
        withdrawn=plan.withdrawn,
        held_back=plan.held_back,
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
            _("The updater may not be downloaded into the installation ({folder} lies in "
              "{install}): it would stay behind among the program files.",
              folder=base.resolve(), install=install_root),
            hint=_("Choose a download folder outside the installation. Nothing was changed."),
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
        folder = download_dir or tempfile.gettempdir()
        raise error_from_os(e, _("create the download folder {folder}", folder=folder)) from e
    return download_dir.resolve()


def updater_command(
    updater: Path, install_root: Path, host_pid: int, *, trusted_root: Path | None = None,
    proxy: str | None = None, extra_args: Sequence[str] = (),
) -> tuple[str, ...]:
    """The updater's command line; server and license it reads from update.ini itself.

    Unattended (``--yes``: the admin approved in the host) and with its window (``--gui``), so
    the admin sees the progress and the result while the host has exited.
    """
    return _command(updater, install_root, ["--wait-pid", str(host_pid), "--yes", "--gui"],
                    trusted_root, proxy, extra_args)


def _command(updater: Path, install_root: Path, mode: Sequence[str], trusted_root: Path | None,
             proxy: str | None, extra_args: Sequence[str]) -> tuple[str, ...]:
    """The updater's command line: ``mode``'s flags, and the root and proxy passed on."""
    command = [str(updater), "--install-dir", str(install_root), *mode]
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
            _("The update was not approved: an administrator must approve the update in opus i."),
            hint=_("Log in to opus i as an administrator and start the update there. "
                   "Nothing was changed."),
        )
    if host_pid <= 0:
        raise RefusedByPolicyError(_("The host's process id {pid} is not valid.", pid=host_pid))
    install = config.read_install(install_dir.resolve())
    installs.record(install.root, "bootstrap start")
    check_policy(install, min_build=min_build)
    _refuse_folder_in_install(download_dir, install.root)
    exe, folder = _fetch_updater(install, trusted_root, download_dir, proxy, platform)
    try:
        command = updater_command(exe, install.root, host_pid, trusted_root=trusted_root,
                                  proxy=proxy, extra_args=extra_args)
        log.info("starting the updater %s for process %d", exe, host_pid)
        pid, output = spawn_detached(command, folder)
    except BaseException:
        if download_dir is None:  # our own fresh folder: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return StartedUpdate(pid=pid, updater=exe, command=command, output_log=output)


def _fetch_updater(install: Install, trusted_root: Path | None, download_dir: Path | None,
                   proxy: str | None, platform: str | None) -> tuple[Path, Path]:
    """The newest updater for the platform, verified, in the download folder; and the folder
    (a fresh temporary one without ``download_dir``, removed again on failure)."""
    view, fetcher = _read_view(install, trusted_root, proxy)
    remote = _updater_for(view, platform or system.platform_name())
    folder = _make_folder(download_dir)
    try:
        exe = folder / system.executable_name(UPDATER_NAME)
        fetch_verified(fetcher, remote.file, exe, None)
        if os.name == "posix":
            exe.chmod(0o755)
        log.info("the updater %s (version %s) is verified", exe, remote.version)
    except BaseException:
        if download_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return exe, folder


def prepare_update(
    install_dir: Path, *, on_line: Callable[[str], None], trusted_root: Path | None = None,
    download_dir: Path | None = None, proxy: str | None = None, platform: str | None = None,
    extra_args: Sequence[str] = (), min_build: int = DEFAULT_MIN_BUILD,
) -> int:
    """While the host still runs: let the newest updater download, stage and back up what the
    update needs (``--prepare``); wait for it. No program file changes.

    Args:
        on_line: Gets each line of the updater's JSON progress as it comes.
        (the others as :func:`start_update`)

    Returns:
        The updater's exit code (0: prepared, or nothing pending).

    Raises:
        OpusiError: As :func:`check_for_updates`, and the updater's download and verification.
    """
    install = config.read_install(install_dir.resolve())
    installs.record(install.root, "bootstrap prepare")
    check_policy(install, min_build=min_build)
    _refuse_folder_in_install(download_dir, install.root)
    exe, folder = _fetch_updater(install, trusted_root, download_dir, proxy, platform)
    command = _command(exe, install.root, ["--prepare", "--no-gui", "--progress", "json"],
                       trusted_root, proxy, extra_args)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, encoding="utf-8") as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
        return proc.returncode
    except OSError as e:
        raise RefusedByPolicyError(
            _("The system refused to start the downloaded updater {updater}: {e}.",
              updater=exe, e=e),
            hint=_("If the temp folder may not run programs, pass --download-dir with one that "
                   "may. Nothing was changed."),
        ) from e
    finally:
        if download_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _updater_for(view: RepositoryView, platform: str) -> RemoteUpdater:
    """The signed updater for ``platform``.

    Raises:
        ServerResponseError: None is published for it (23).
    """
    remote = view.updater_for(platform)
    if remote is None:
        offered = ", ".join(sorted(u.platform for u in view.updaters)) or _("none")
        raise ServerResponseError(
            _("The update server offers no updater for this platform ({platform}; "
              "offered: {offered}).", platform=platform, offered=offered),
            hint=_("Please tell the vendor. Nothing was changed."),
        )
    return remote


