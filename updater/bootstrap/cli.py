"""``opusi-update``: the bootstrap's command line, for a host app in any language.

Prints one JSON object on stdout (also on failure); errors become exit codes in
:mod:`updater.core.report` only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from updater.bootstrap.api import check_for_updates, prepare_update, start_update
from updater.bootstrap.policy import DEFAULT_MIN_BUILD, DEFAULT_MIN_BUILD_STARTUP
from updater.core import i18n
from updater.core.errors import (
    OpusiError,
    RefusedByPolicyError,
    all_error_classes,
    exit_code_for,
)
from updater.core.i18n import _, choose_language, tr
from updater.core.report import ArgumentParser, format_error, run_command
from updater.shared import system


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="opusi-update",
                       description=tr(_("The host app's side of the opus i Internet update. "
                                        "Prints one JSON object on stdout; the exit code is 0 or "
                                        "the error's code.")))
    commands = p.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help=tr(_("report pending builds or why the update is refused")))
    check.add_argument("--at-startup", action="store_true",
                       help=tr(_("the check at program start (needs option 53 and a newer "
                                 "build)")))
    check.add_argument("--min-build-startup", type=int, default=DEFAULT_MIN_BUILD_STARTUP,
                       help=tr(_("oldest build for the start-up check (default %(default)s)")))
    start = commands.add_parser(
        "start", help=tr(_("download, verify and start the updater; return at once")))
    start.add_argument("--admin", action="store_true",
                       help=tr(_("the host confirms that an administrator approved the update")))
    start.add_argument("--host-pid", type=int, required=True,
                       help=tr(_("the host's process id")))
    start.add_argument("--download-dir", type=Path,
                       help=tr(_("folder for the updater, outside the install "
                                 "(default: a new temporary folder)")))
    prepare = commands.add_parser(
        "prepare", help=tr(_("while the program still runs: let the updater download, stage "
                             "and back up what the update needs; wait for it")))
    prepare.add_argument("--download-dir", type=Path,
                         help=tr(_("folder for the updater, outside the install "
                                   "(default: a new temporary folder)")))
    for sub in (check, start, prepare):
        sub.add_argument("--install-dir", type=Path, required=True,
                         help=tr(_("the opus i program folder")))
        sub.add_argument("--trusted-root", type=Path,
                         help=tr(_("trusted root metadata (default: built in)")))
        sub.add_argument("--proxy",
                         help=tr(_("proxy URL (default: update.ini, else "
                                   "HTTPS_PROXY/HTTP_PROXY)")))
        sub.add_argument("--min-build", type=int, default=DEFAULT_MIN_BUILD,
                         help=tr(_("oldest build the Internet update accepts (default "
                                   "%(default)s)")))
        sub.add_argument("--platform", help=tr(_("platform of the updater (default: this one)")))
        sub.add_argument("-v", "--verbose", action="store_true",
                         help=tr(_("log details on stderr")))
    return p


def _run_check(args: argparse.Namespace) -> dict[str, Any]:
    result = check_for_updates(
        args.install_dir, at_startup=args.at_startup, trusted_root=args.trusted_root,
        min_build=args.min_build, min_build_startup=args.min_build_startup, proxy=args.proxy,
        platform=args.platform,
    )
    return {"status": result.status, "installed": result.installed, "pending": list(result.pending),
            "target": result.target, "download_bytes": result.download_bytes,
            "updater_available": result.updater_available, "interrupted": result.interrupted,
            "withdrawn": [{"build": b, "reason": r} for b, r in result.withdrawn],
            "held_back": list(result.held_back)}


def _run_start(args: argparse.Namespace) -> dict[str, Any]:
    started = start_update(
        args.install_dir, admin=args.admin, host_pid=args.host_pid, trusted_root=args.trusted_root,
        download_dir=args.download_dir, proxy=args.proxy, platform=args.platform,
        min_build=args.min_build,
    )
    return {"status": "started", "pid": started.pid, "updater": str(started.updater),
            "log": str(started.output_log) if started.output_log else None}


def _run_prepare(args: argparse.Namespace) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def forward(line: str) -> None:
        print(line, flush=True)  # the updater's JSON progress, line by line, for the host
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "error":
                last.update(record)

    code = prepare_update(
        args.install_dir, on_line=forward, trusted_root=args.trusted_root,
        download_dir=args.download_dir, proxy=args.proxy, platform=args.platform,
        min_build=args.min_build,
    )
    if code != 0:
        raise updater_error(code, str(last.get("text", "")))
    return {"status": "prepared"}


def updater_error(code: int, text: str) -> OpusiError:
    """The error the updater ended with (its code and title; its message without the head)."""
    known = {cls.exit_code: cls for cls in all_error_classes()}
    message = text.partition("\n")[2].partition("\n")[0] or str(
        _("The updater ended with error {code}.", code=code))
    error = OpusiError(message)
    error.exit_code, error.title = code, known.get(code, OpusiError).title
    return error


def error_json(error: BaseException) -> dict[str, Any]:
    """The JSON object a failed command prints: status, code, message (and hint)."""
    refused = isinstance(error, RefusedByPolicyError)
    if isinstance(error, OpusiError):
        message, hint = error.message, error.hint
    else:
        message, hint = f"internal error ({type(error).__name__}: {error})", ""
    # "message" and "hint" stay English (stable for the host); "localized" is as shown
    return {"status": "refused" if refused else "error", "code": exit_code_for(error),
            "message": str(message), "hint": str(hint),
            "localized": format_error(error), "lang": i18n.language()}


def _work(argv: Sequence[str]) -> int:
    # the language of the help and the messages: the system's (the host passes none)
    i18n.use(choose_language(None, None, system.ui_language()))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())  # run_command prints the error itself
    try:
        args = _parser().parse_args(argv)
        if args.verbose:
            root.setLevel(logging.DEBUG)
            root.addHandler(logging.StreamHandler(sys.stderr))
        run = {"check": _run_check, "start": _run_start, "prepare": _run_prepare}
        payload = run[args.command](args)
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
