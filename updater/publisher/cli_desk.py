"""``opusi-repo`` for the support desk: ``staff`` (accounts) and ``desk`` (the web page);
registered by :mod:`updater.publisher.cli`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

from updater.core.errors import UsageError
from updater.core.report import ArgumentParser


def add_parsers(sub: argparse._SubParsersAction[ArgumentParser],
                db: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the subcommands; ``db`` adds ``--db``."""
    st = sub.add_parser("staff", help="the support desk's staff accounts")
    st_sub = st.add_subparsers(dest="staff_command", required=True, parser_class=ArgumentParser)
    add = st_sub.add_parser("add", help="make an account (or set a new password and roles)")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=("support", "release"),
                     help="support: licenses; release: builds (repeatable)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (else: asked twice)")
    remove = st_sub.add_parser("remove", help="close an account and end its sessions")
    remove.add_argument("name")
    st_sub.add_parser("list", help="list the accounts")
    for p in st_sub.choices.values():
        db(p)

    desk = sub.add_parser("desk", help="the support desk: a web page for licenses, builds, "
                                       "status and the audit log")
    db(desk)
    desk.add_argument("--repo", type=Path, required=True, help="repository folder")
    desk.add_argument("--keys", type=Path,
                      help="signing keys for rollout and withdrawal (else builds read-only)")
    desk.add_argument("--log", type=Path, action="append", default=[],
                      help="an update server's request log, for the status (repeatable)")
    desk.add_argument("--bind", default="127.0.0.1:8081",
                      help="HOST:PORT (default 127.0.0.1:8081; plain HTTP only on loopback)")
    desk.add_argument("--cert", type=Path, help="TLS certificate chain (PEM)")
    desk.add_argument("--key", type=Path, help="TLS private key (PEM)")


def _staff(args: argparse.Namespace) -> int:
    from updater.publisher.desk import staff
    from updater.publisher.licenses import open_registry

    with open_registry(args.db) as registry:
        if args.staff_command == "add":
            password = _password(args.password_stdin)
            member = staff.add(registry.db, args.name, password, args.role)
            print(f"Staff account {member.name}: {', '.join(sorted(member.roles))}.")
        elif args.staff_command == "remove":
            staff.remove(registry.db, args.name)
            print(f"Staff account {args.name} closed.")
        else:
            for member, active in staff.accounts(registry.db):
                if args.json:
                    print(json.dumps({"name": member.name, "roles": sorted(member.roles),
                                      "active": active}))
                else:
                    print(f"{member.name:<24} {' '.join(sorted(member.roles)):<16} "
                          f"{'active' if active else 'closed'}")
    return 0


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (at least 12 characters): ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("The two passwords differ; nothing was changed.")
    return first


def _desk(args: argparse.Namespace) -> int:
    from updater.publisher.cli import parse_bind  # noqa: I001 - not at the top: a cycle
    from updater.publisher.desk.pages import Sources
    from updater.publisher.desk.serve import serve_desk

    host, port = parse_bind(args.bind)
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together.")
    serve_desk(args.db, Sources(args.repo, args.keys, tuple(args.log)), host, port,
               certfile=args.cert, keyfile=args.key,
               ready=lambda p: print(f"The desk is at http{'s' if args.cert else ''}://"
                                     f"{host}:{p}/", flush=True))
    return 0


COMMANDS = {"staff": _staff, "desk": _desk}
