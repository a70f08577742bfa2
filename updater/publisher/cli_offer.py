"""``opusi-repo`` on a bad day: ``keys``, ``withdraw``, ``rollout`` and ``status`` (the
commands of :mod:`updater.publisher.keys`, :mod:`updater.publisher.offer` and
:mod:`updater.publisher.status`); registered by :mod:`updater.publisher.cli`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from updater.core.errors import UsageError
from updater.core.report import ArgumentParser
from updater.publisher import repository


def add_parsers(sub: argparse._SubParsersAction[ArgumentParser],
                repo_keys: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the subcommands; ``repo_keys`` adds ``--repo`` and ``--keys``."""
    wd = sub.add_parser("withdraw", help="stop offering a build that turned out broken "
                                         "(or, with --undo, offer it again)")
    repo_keys(wd)
    wd.add_argument("--build", type=int, required=True, help="the build to withdraw")
    wd_how = wd.add_mutually_exclusive_group(required=True)
    wd_how.add_argument("--reason", help="why, in a sentence (signed; admins may see it)")
    wd_how.add_argument("--undo", action="store_true", help="offer the build again")

    ro = sub.add_parser("rollout", help="offer a build to a share of licenses and to channels")
    repo_keys(ro)
    ro.add_argument("--build", type=int, required=True, help="the build to offer")
    ro_how = ro.add_mutually_exclusive_group(required=True)
    ro_how.add_argument("--percent", type=float, help="share of licenses offered it (0-100)")
    ro_how.add_argument("--everyone", action="store_true", help="offer it to every install")
    ro.add_argument("--channel", action="append", default=[],
                    help="offer it in full to installs in this channel (update.ini [Update] "
                         "channel=NAME); repeatable")

    st = sub.add_parser("status", help="who is on which build, who is stuck, how a rollout "
                                       "goes (from the server's request log)")
    st.add_argument("--log", type=Path, required=True, action="append",
                    help="request log written by 'serve --request-log' (repeatable)")
    st.add_argument("--repo", type=Path, help="the repository, for each build's rollout")
    st.add_argument("--json", action="store_true", help="print JSON")

    _keys_parser(sub)


def _keys_parser(sub: argparse._SubParsersAction[ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="list, replace and add signing keys (see the README's "
                                       "'bad day' section)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True,
                                   parser_class=ArgumentParser)
    show = keys_sub.add_parser("list", help="each role's key ids, threshold, version, expiry")
    rotate = keys_sub.add_parser("rotate", help="replace a role's key (the first --keys "
                                                "folder's) by a new one")
    rotate.add_argument("role", choices=repository.ROLES)
    add = keys_sub.add_parser("add-root-key", help="add a root key in a folder of its own and "
                                                   "set the root threshold")
    add.add_argument("--new-folder", type=Path, required=True,
                     help="empty folder for the new root key (e.g. a second USB stick)")
    add.add_argument("--threshold", type=int, required=True, help="root keys needed from now")
    resign = keys_sub.add_parser("resign", help="sign a role anew with a fresh expiry")
    resign.add_argument("role", choices=repository.ROLES)
    for p in (rotate, resign):
        p.add_argument("--days", type=int, default=None,
                       help="lifetime of the new metadata (default: the repository's setting)")
    for p in (show, rotate, add, resign):
        p.add_argument("--repo", type=Path, required=True, help="repository folder")
        p.add_argument("--keys", type=Path, action="append", default=[],
                       help="a key folder; repeat for root keys kept apart (list: optional)")
    show.add_argument("--json", action="store_true", help="print JSON")


def _keys(args: argparse.Namespace) -> int:
    from updater.publisher import keys

    if args.keys_command == "list":
        for row in keys.list_keys(args.repo, args.keys):
            if args.json:
                print(json.dumps(row.as_json()))
            else:
                print(f"{row.role:<9} version {row.version:<4} expires "
                      f"{row.expires:%Y-%m-%d %H:%M} UTC  threshold {row.threshold} of "
                      f"{len(row.keyids)}: {', '.join(k[:16] for k in row.keyids)}"
                      + "".join(f"\n{'':<9} key file {f}" for f in row.files))
    elif args.keys_command == "rotate":
        keyid = keys.rotate(args.repo, args.role, args.keys, args.days)
        print(f"The {args.role} key is now {keyid[:16]} ({args.keys[0] / (args.role + '.pem')}); "
              "the old one is kept as retired and no longer trusted.")
    elif args.keys_command == "add-root-key":
        keyid = keys.add_root_key(args.repo, args.keys, args.new_folder, args.threshold)
        print(f"Added the root key {keyid[:16]} ({args.new_folder / 'root.pem'}); "
              f"{args.threshold} root key(s) now sign each new root.")
    else:
        version = keys.resign(args.repo, args.role, args.keys, args.days)
        print(f"{args.role} re-signed: version {version}.")
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from updater.publisher import offer

    info = offer.withdraw(args.repo, args.keys, args.build, None if args.undo else args.reason)
    print(f"Build {info.build} is withdrawn: {info.withdrawn}" if info.withdrawn
          else f"Build {info.build} is offered.")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    from updater.publisher import offer

    info = offer.roll_out(args.repo, args.keys, args.build,
                          None if args.everyone else args.percent, tuple(args.channel))
    print(f"Build {info.build} is offered to {offer.describe(info.audience)}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    from updater.publisher import status

    lines: list[str] = []
    for log_file in args.log:
        try:
            lines += log_file.read_text("utf-8", errors="replace").splitlines()
        except OSError as e:
            raise UsageError(f"Cannot read the request log {log_file}: {e}") from e
    report = status.summarize(status.read_requests(lines))
    rollouts = _rollouts(args.repo) if args.repo else {}
    if args.json:
        print(json.dumps(status.as_json(report, rollouts), indent=2))
        return 0
    print(f"{len(report.licenses)} license(s) seen.")
    for build, count in report.on_build().items():
        print(f"  newest build fetched {build if build is not None else '(none: checks only)'}:"
              f" {count}")
    for view in report.stuck():
        print(f"  stuck: {view.license} on build {view.newest}, {view.attempts} attempts, "
              f"last seen {view.last_seen:%Y-%m-%d %H:%M}")
    for build, (offered, reached) in status.rollout(report, rollouts).items():
        print(f"  build {build} offered to {offered}; fetched by {reached} license(s)")
    return 0


def _rollouts(repo: Path) -> dict[int, str]:
    from updater.publisher import offer

    state = repository.load_state(repo)
    return {build: offer.describe(state.build_info(build).audience) for build in state.builds()}


COMMANDS = {"keys": _keys, "withdraw": _withdraw, "rollout": _rollout, "status": _status}
