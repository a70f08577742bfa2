"""``opusi-INSTALLUpdate``: the standalone updater's command line (frozen into the .exe).

Merges flags with ``update.ini`` (flags win), sets up the run's log file in the install's
``Logs`` folder, asks before it changes anything (unless ``--yes``), runs
:func:`updater.install.run.run_update`, and prints a summary. Errors become exit codes in
:mod:`updater.core.report` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from updater import __version__
from updater.core.errors import UsageError
from updater.core.install import Install
from updater.core.paths import BACKUP_DIR, LOG_DIR
from updater.core.plan import UpdatePlan
from updater.core.report import ArgumentParser, run_command
from updater.install import recovery, testhooks
from updater.install import run as update
from updater.install.backup.store import backups_in
from updater.shared import config, package
from updater.shared.progress import PhaseHandle, Reporter, make_reporter
from updater.shared.transport import NetworkSettings

log = logging.getLogger(__name__)


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="opusi-INSTALLUpdate",
        description="Brings an opus i installation to its newest build over the Internet.",
    )
    p.add_argument("--version", action="version", version=f"opusi-INSTALLUpdate {__version__}")
    p.add_argument(
        "--install-dir", type=Path, help="the opus i program folder (default: next to this program)"
    )
    p.add_argument("--server", help="update server URL (default: update.ini)")
    p.add_argument("--license", help="license number (default: update.ini)")
    p.add_argument(
        "--proxy",
        help="proxy URL, e.g. http://user:password@proxy:3128 (default: update.ini, "
        "else HTTPS_PROXY/HTTP_PROXY)",
    )
    p.add_argument(
        "--wait-pid", type=int, help="wait for this process (the host program) to exit first"
    )
    p.add_argument(
        "--wait-timeout", type=float, help="seconds to wait for it (default: update.ini or 120)"
    )
    p.add_argument(
        "--offline", type=Path, metavar="DIR", help="use a downloaded copy of the repository"
    )
    p.add_argument(
        "--check", action="store_true", help="only report pending builds; change nothing"
    )
    p.add_argument("--yes", action="store_true", help="do not ask before updating")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar")
    p.add_argument(
        "--allow-remote", action="store_true", help="update an installation on a network drive"
    )
    p.add_argument("--trusted-root", type=Path, help="trusted root metadata (default: built in)")
    p.add_argument(
        "--list-package",
        type=Path,
        metavar="FILE",
        help="list the files in a build package (.7z, also zstd ones) and exit",
    )
    p.add_argument(
        "--restore",
        nargs="?",
        const="",
        metavar="ZIP",
        help="restore a backup by hand (default: the newest one)",
    )
    p.add_argument("--keep-backups", type=int, help="backups to keep (default: update.ini or 3)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    return p


_handlers: list[logging.Handler] = []


def _add_handler(handler: logging.Handler) -> None:
    logging.getLogger().addHandler(handler)
    _handlers.append(handler)


def _remove_handlers() -> None:
    while _handlers:
        handler = _handlers.pop()
        logging.getLogger().removeHandler(handler)
        handler.close()


def _setup_console(verbose: bool) -> None:
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # the report step prints the final error itself; the console needs it only once
    console.addFilter(lambda record: record.name != "updater.core.report")
    _add_handler(console)


def _setup_log_file(install: Path) -> Path | None:
    """A log file for this run in the install's Logs folder (None if it cannot be written)."""
    folder = install / LOG_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"update-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _add_handler(handler)
    return path


def _request(args: argparse.Namespace, install: Install) -> update.UpdateRequest:
    offline = args.offline
    network = None
    server = ""
    if offline is None:
        number = config.license_number(args.license, install.ini)
        server = config.server_url(args.server, install.ini)
        network = NetworkSettings(
            license_number=number,
            proxy_url=args.proxy or install.ini.proxy_url,
            connect_timeout=args.timeout,
            read_timeout=args.timeout,
        )
    return update.UpdateRequest(
        install=install.root,
        server_url=server,
        network=network,
        trusted_root=config.trusted_root(args.trusted_root),
        offline_dir=offline,
        wait_pid=args.wait_pid,
        wait_seconds=args.wait_timeout
        if args.wait_timeout is not None
        else install.ini.host_wait_seconds,
        keep_backups=args.keep_backups
        if args.keep_backups is not None
        else install.ini.keep_backups,
        check_only=args.check,
        allow_remote=args.allow_remote,
    )


def _confirm(args: argparse.Namespace, reporter: Reporter) -> update.Confirm:
    def confirm(plan: UpdatePlan) -> bool:
        builds = ", ".join(str(b.build) for b in plan.builds)
        reporter.message(
            f"Update from build {plan.installed} to {plan.target} (builds {builds}; "
            f"{plan.download_bytes / 1e6:.1f} MB to download). A backup is made first."
        )
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("Not started from a console: pass --yes to update without asking.")
        return input("Continue? [y/N] ").strip().lower() in ("y", "yes", "j", "ja")

    return confirm


def _work(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    _setup_console(args.verbose)
    if args.list_package is not None:
        return _list_package(args.list_package)
    root = config.find_install(args.install_dir)
    log_file = _setup_log_file(root) if root.is_dir() else None
    log.info("opusi-INSTALLUpdate %s on %s", __version__, root)
    reporter = make_reporter(args.progress, sys.stdout)
    if args.progress == "none":
        reporter = _PlainSummary(reporter)
    if args.restore is not None:
        return _restore(root, args.restore, reporter)
    install = config.read_install(root)
    request = _request(args, install)
    if args.check:
        return _check(request, args.progress == "json")
    reporter.message(f"opus i installation {root}, build {install.build}.")
    result = update.run_update(request, reporter, _confirm(args, reporter))
    _summary(result, reporter, log_file)
    return 0


def _check(request: update.UpdateRequest, as_json: bool) -> int:
    plan, interrupted = update.check(request)
    pending = [b.build for b in plan.builds]
    if as_json:
        print(
            json.dumps(
                {
                    "installed": plan.installed,
                    "pending": pending,
                    "target": plan.target,
                    "download_bytes": plan.download_bytes,
                    "interrupted": interrupted,
                }
            )
        )
    elif pending:
        print(
            f"Build {plan.installed} installed; pending builds: {', '.join(map(str, pending))} "
            f"({plan.download_bytes / 1e6:.1f} MB)."
        )
    else:
        print(f"Build {plan.installed} installed; it is up to date.")
    return 0


def _list_package(path: Path) -> int:
    """Print a package's entries (size and name), as an admin's way to look into one."""
    members = package.list_members(path)
    for member in members:
        kind = "" if member.is_file else " (link)" if member.is_link else " (folder)"
        print(f"{member.size:>14,}  {member.name}{kind}")
    print(f"{len(members)} entries, {sum(m.size for m in members):,} bytes unpacked")
    return 0


def _restore(root: Path, zip_arg: str, reporter: Reporter) -> int:
    if zip_arg:
        zip_path = Path(zip_arg)
    else:  # the newest, in the order the backup store keeps (by the time in the name)
        backups = backups_in(root)
        if not backups:
            raise UsageError(f"No backup found in {root / BACKUP_DIR}.")
        zip_path = backups[0][0]
    restored = recovery.restore_by_hand(root, zip_path)
    reporter.message(f"Restored {restored.files} files of build {restored.build} from {zip_path}.")
    return 0


def _summary(result: update.UpdateResult, reporter: Reporter, log_file: Path | None) -> None:
    if result.recovered:
        reporter.message("An interrupted update was undone first.")
    if not result.applied:
        reporter.message(
            f"Build {result.from_build} is installed; it is up to date."
            if not result.pending
            else "Update cancelled; nothing was changed."
        )
        return
    reporter.message(
        f"Updated from build {result.from_build} to {result.to_build} "
        f"(applied {', '.join(map(str, result.applied))}) in {result.seconds:.1f} s."
    )
    if result.backup:
        state = "made" if result.backup_created else "reused"
        reporter.message(f"Backup {state}: {result.backup}")
    if log_file:
        reporter.message(f"Log: {log_file}")


class _PlainSummary(Reporter):
    """With ``--progress none``, status messages still reach stdout as plain lines."""

    def __init__(self, inner: Reporter) -> None:
        super().__init__(sys.stdout)
        self._inner = inner

    def phase(
        self, name: str, total: int, build: int | None = None, unit: str = "B"
    ) -> PhaseHandle:
        return self._inner.phase(name, total, build, unit)

    def message(self, text: str) -> None:
        self._inner.message(text)
        print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opusi-INSTALLUpdate``."""
    testhooks.activate_from_environment()  # the fault suites' hook; unset: nothing happens
    try:
        return run_command(_work, argv)
    finally:
        _remove_handlers()


if __name__ == "__main__":
    sys.exit(main())
