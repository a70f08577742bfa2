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
from pathlib import Path

from updater import __version__
from updater.core import i18n
from updater.core.errors import OpusiError, UsageError
from updater.core.i18n import LANGUAGES, _, choose_language, tr
from updater.core.install import Install
from updater.core.paths import BACKUP_DIR
from updater.core.plan import UpdatePlan
from updater.core.report import ArgumentParser, format_error, run_command
from updater.install import gui, recovery, runlog, testhooks
from updater.install import run as update
from updater.install.backup.store import backups_in
from updater.install.gui.runner import (
    Session,
    WindowReporter,
    ask_folder_in_window,
    ask_in_window,
)
from updater.install.prepare import PrepareResult, prepare
from updater.shared import config, installs, package, system
from updater.shared.progress import Mode, PhaseHandle, Reporter, make_reporter
from updater.shared.transport import NetworkSettings

log = logging.getLogger(__name__)


def _parser() -> ArgumentParser:
    # argparse %-formats help texts: they are given translated already
    p = ArgumentParser(
        prog="opusi-INSTALLUpdate",
        description=tr(_("Brings an opus i installation to its newest build over the Internet.")),
    )
    p.add_argument("--version", action="version", version=f"opusi-INSTALLUpdate {__version__}",
                   help=tr(_("show the version and exit")))
    p.add_argument(
        "--install-dir",
        type=Path,
        help=tr(_("the opus i program folder (default: next to this program)")),
    )
    p.add_argument("--server", help=tr(_("update server URL (default: update.ini)")))
    p.add_argument("--license", help=tr(_("license number (default: update.ini)")))
    p.add_argument(
        "--proxy",
        help=tr(
            _(
                "proxy URL, e.g. http://user:password@proxy:3128 (default: update.ini, "
                "else HTTPS_PROXY/HTTP_PROXY)"
            )
        ),
    )
    p.add_argument(
        "--wait-pid", type=int, help=tr(_("wait for this process (the host program) to exit first"))
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        help=tr(_("seconds to wait for it (default: update.ini or 120)")),
    )
    p.add_argument(
        "--offline", type=Path, metavar="DIR", help=tr(_("use a downloaded copy of the repository"))
    )
    p.add_argument(
        "--check", action="store_true", help=tr(_("only report pending builds; change nothing"))
    )
    p.add_argument(
        "--prepare", action="store_true",
        help=tr(_("while opus i still runs: download, stage and back up what the update needs; "
                  "change no program file")))
    p.add_argument("--yes", action="store_true", help=tr(_("do not ask before updating")))
    p.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        help=tr(_("how progress is shown in text mode: bars (default), JSON lines for a host "
                  "program, or none")),
    )
    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "--gui",
        action="store_true",
        help=tr(_("show the window (default when started without a terminal)")),
    )
    window.add_argument(
        "--no-gui", action="store_true", help=tr(_("never show a window; text mode only"))
    )
    p.add_argument(
        "--lang",
        choices=LANGUAGES,
        help=tr(_("language of the messages (default: update.ini, else the system's)")),
    )
    p.add_argument("--allow-remote", action="store_true",
                   help=tr(_("update an installation on a network drive")))
    p.add_argument("--build", type=int, metavar="N",
                   help=tr(_("update to this build (e.g. on the vendor's advice), also while "
                             "the vendor still releases it step by step")))
    p.add_argument(
        "--trusted-root", type=Path, help=tr(_("trusted root metadata (default: built in)"))
    )
    p.add_argument("--list-package", type=Path, metavar="FILE",
                   help=tr(_("list the files in a build package (.7z, also zstd ones) and exit")))
    p.add_argument(
        "--restore",
        nargs="?",
        const="",
        metavar="ZIP",
        help=tr(_("restore a backup by hand (default: the newest one)")),
    )
    p.add_argument(
        "--keep-backups", type=int, help=tr(_("backups to keep (default: update.ini or 3)"))
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help=tr(_("network timeout in seconds (default 30)"))
    )
    p.add_argument("-v", "--verbose", action="store_true", help=tr(_("log details")))
    return p


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
        build=args.build,
    )


def _confirm(args: argparse.Namespace, reporter: Reporter) -> update.Confirm:
    def confirm(plan: UpdatePlan) -> bool:
        builds = ", ".join(str(b.build) for b in plan.builds)
        reporter.message(
            _(
                "Update from build {installed} to {target} (builds {builds}; {mb:.1f} MB to "
                "download). A backup is made first.",
                installed=plan.installed,
                target=plan.target,
                builds=builds,
                mb=plan.download_bytes / 1e6,
            )
        )
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(_("Not started from a console: pass --yes to update without asking."))
        answer = input(tr(_("Continue? [y/N] ")))
        return answer.strip().lower() in ("y", "yes", "j", "ja")

    return confirm


def _early_language(argv: Sequence[str]) -> str | None:
    """``--lang`` from the command line before it is parsed (``--help`` is shown in it)."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
    return None


def _work(argv: Sequence[str]) -> int:
    flag = _early_language(argv)
    i18n.use(choose_language(flag, None, system.ui_language()))
    runlog.setup_console("-v" in argv or "--verbose" in argv)  # before parsing: its errors
    args = _parser().parse_args(argv)
    if args.list_package is not None:
        return _list_package(args.list_package)
    if _wants_window(args):
        return gui.run_window(lambda reporter, session: _flow(args, reporter, session))
    progress: Mode = args.progress or "bar"
    reporter = make_reporter(progress, sys.stdout)
    if progress == "none":
        reporter = _PlainSummary(reporter)
    try:
        return _flow(args, reporter, None)
    except OpusiError as e:  # JSON progress ends with the error too, for the host to read
        if hasattr(reporter, "failed"):
            reporter.failed(e.exit_code, format_error(e, localized=False), format_error(e))
        raise


def _wants_window(args: argparse.Namespace) -> bool:
    """``--gui``; else, unless ``--no-gui`` or ``--progress``, when no terminal is there."""
    if args.no_gui or (args.progress is not None and not args.gui):
        return False
    if not (args.gui or gui.no_terminal()):
        return False
    why_not = gui.window_possible()
    if why_not is not None:
        print(tr(_("No window ({reason}): text mode.", reason=why_not)), file=sys.stderr)
        return False
    return True


def _flow(args: argparse.Namespace, reporter: Reporter, session: Session | None) -> int:
    """The run after the arguments, the same with a window (``session``) and without."""
    root = config.find_install(
        args.install_dir, ask_folder_in_window(session) if session is not None else None)
    log_file = runlog.setup_log_file(root) if root.is_dir() else None
    if session is not None:
        session.root, session.log_file = root, log_file
    log.info("opusi-INSTALLUpdate %s on %s", __version__, root)
    if args.restore is not None:
        return _restore(root, args.restore, reporter)
    install = config.read_install(root)
    installs.record(root, "updater")
    if args.lang is None and install.ini.language:
        i18n.use(choose_language(None, install.ini.language, system.ui_language()))
    log.info("messages shown in %s", i18n.language())
    request = _request(args, install)
    if args.check:
        return _check(request, args.progress == "json")
    if args.prepare:
        _prepared(prepare(request, reporter), reporter)
        return 0
    reporter.message(
        _("opus i installation {root}, build {build}.", root=root, build=install.build)
    )
    confirm = (
        _confirm(args, reporter)
        if session is None or not isinstance(reporter, WindowReporter)
        else ask_in_window(session, reporter, args.yes)
    )
    result = update.run_update(request, reporter, confirm)
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
            tr(
                _(
                    "Build {installed} installed; pending builds: {pending} ({mb:.1f} MB).",
                    installed=plan.installed,
                    pending=", ".join(map(str, pending)),
                    mb=plan.download_bytes / 1e6,
                )
            )
        )
    else:
        print(tr(_("Build {installed} installed; it is up to date.", installed=plan.installed)))
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
            raise UsageError(_("No backup found in {folder}.", folder=root / BACKUP_DIR))
        zip_path = backups[0][0]
    restored = recovery.restore_by_hand(root, zip_path)
    reporter.message(
        _(
            "Restored {files} files of build {build} from {zip}.",
            files=restored.files,
            build=restored.build,
            zip=zip_path,
        )
    )
    return 0


def _prepared(result: PrepareResult, reporter: Reporter) -> None:
    if result.interrupted:
        return
    if not result.pending:
        reporter.message(_("Build {build} is installed; it is up to date.", build=result.installed))
        return
    reporter.message(
        _("Prepared builds {builds} in {seconds:.1f} s (downloaded, staged, checked; backup "
          "{backup}). Starting the update now only applies them.",
          builds=", ".join(map(str, result.prepared)), seconds=result.seconds,
          backup=result.backup))


def _summary(result: update.UpdateResult, reporter: Reporter, log_file: Path | None) -> None:
    if result.recovered:
        reporter.message(_("An interrupted update was undone first."))
    if not result.applied:
        reporter.message(
            _("Build {build} is installed; it is up to date.", build=result.from_build)
            if not result.pending
            else _("Update cancelled; nothing was changed.")
        )
        return
    reporter.message(
        _(
            "Updated from build {old} to {new} (applied {applied}) in {seconds:.1f} s.",
            old=result.from_build,
            new=result.to_build,
            applied=", ".join(map(str, result.applied)),
            seconds=result.seconds,
        )
    )
    if result.backup:
        reporter.message(
            _("Backup made: {backup}", backup=result.backup)
            if result.backup_created
            else _("Backup reused: {backup}", backup=result.backup)
        )
    if log_file:
        reporter.message(_("Log: {file}", file=log_file))


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
        print(tr(text), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opusi-INSTALLUpdate``."""
    testhooks.activate_from_environment()  # the fault suites' hook; unset: nothing happens
    try:
        return run_command(_work, argv)
    finally:
        runlog.remove_handlers()


if __name__ == "__main__":
    sys.exit(main())
