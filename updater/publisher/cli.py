"""``opusi-repo``: the vendor's tool for the repository, the license registry and the server.

Parses arguments and calls :mod:`updater.publisher.repository`, :mod:`updater.publisher.licenses`
and (for ``serve``) :mod:`updater.publisher.serving` (the bad day's commands, ``keys``,
``withdraw``, ``rollout`` and ``status``, are in :mod:`updater.publisher.cli_offer`); prints
results for a person to read. Errors become exit codes in :mod:`updater.core.report` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from updater.core.errors import UsageError
from updater.core.report import ArgumentParser, run_command
from updater.publisher import cli_desk, cli_offer, publish, repository
from updater.shared import package

#: The license registry when --db is not given: $OPUSI_DB (keeps a database URL, and any password
#: in it, off the command line), else this file in the current folder.
DEFAULT_DB = "licenses.sqlite3"
DB_HELP = ("the license registry: a SQLite file (PATH or sqlite:///PATH) or "
           "postgresql://USER@HOST:PORT/DATABASE (password from PGPASSWORD or ~/.pgpass); "
           f"default: $OPUSI_DB, else {DEFAULT_DB}")


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="opusi-repo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    init = sub.add_parser("init", help="create a new repository and its keys")
    _repo_keys(init)
    init.add_argument(
        "--expiry",
        action="append",
        default=[],
        metavar="ROLE=DAYS",
        help="metadata lifetime, e.g. timestamp=7 (root, targets, snapshot: 365)",
    )

    pub = sub.add_parser("publish", help="publish the complete program tree of a build")
    _repo_keys(pub)
    pub.add_argument("--build", type=int, required=True, help="build number, e.g. 1148")
    pub.add_argument("--tree", type=Path, required=True, help="the build's complete program tree")
    pub.add_argument(
        "--ignore-excluded",
        action="store_true",
        help="leave out files in customer-data folders instead of refusing",
    )
    pub.add_argument(
        "--method",
        choices=sorted(package.METHODS),
        default=package.DEFAULT_METHOD,
        help="compression: zstd (default, fast to apply) or lzma2 (opens in every 7-Zip)",
    )
    pub.add_argument(
        "--no-deltas",
        dest="deltas",
        action="store_false",
        help="publish no delta package beside the full one",
    )

    upd = sub.add_parser("publish-updater", help="publish the frozen updater for a platform")
    _repo_keys(upd)
    upd.add_argument("--file", type=Path, required=True, help="the frozen updater executable")
    upd.add_argument("--platform", required=True, help="e.g. windows-x86_64, linux-x86_64")
    upd.add_argument("--version", default="", help="the updater's version, for the record")

    show = sub.add_parser("list", help="list what is published")
    show.add_argument("--repo", type=Path, required=True)

    ts = sub.add_parser("resign-timestamp", help="re-sign timestamp.json if it expires soon (cron)")
    ts.add_argument("--repo", type=Path, required=True)
    ts.add_argument("--timestamp-key", type=Path, required=True, help="KEYDIR/timestamp.pem")
    ts.add_argument("--min-remaining-hours", type=float, default=72.0)

    cli_offer.add_parsers(sub, _repo_keys)
    cli_desk.add_parsers(sub, _db_option)
    _license_parser(sub)
    _serve_parser(sub)
    return parser


def _repo_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, required=True, help="repository folder")
    parser.add_argument("--keys", type=Path, required=True, help="private key folder (keep safe)")


def _license_parser(sub: argparse._SubParsersAction[ArgumentParser]) -> None:
    lic = sub.add_parser("license", help="the license registry")
    lic_sub = lic.add_subparsers(dest="license_command", required=True, parser_class=ArgumentParser)
    add = lic_sub.add_parser("add", help="register (or re-activate) a license")
    add.add_argument("number")
    add.add_argument(
        "--until",
        type=date.fromisoformat,
        default=None,
        help="last day of update entitlement (YYYY-MM-DD); none: no end",
    )
    add.add_argument("--note", default="", help="free text for the vendor (not sent anywhere)")
    revoke = lic_sub.add_parser("revoke", help="revoke a license")
    revoke.add_argument("number")
    lic_sub.add_parser("list", help="list every license")
    lic_sub.add_parser("migrate", help="create or update the registry's tables (safe to repeat)")
    for p in lic_sub.choices.values():
        _db_option(p)


def _serve_parser(sub: argparse._SubParsersAction[ArgumentParser]) -> None:
    srv = sub.add_parser("serve", help="serve the repository to licensed clients")
    srv.add_argument("--repo", type=Path, required=True)
    srv.add_argument("--db", default=_default_db(), help=DB_HELP)
    srv.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    srv.add_argument("--cert", type=Path, help="TLS certificate chain (PEM)")
    srv.add_argument("--key", type=Path, help="TLS private key (PEM)")
    srv.add_argument(
        "--timestamp-key",
        type=Path,
        help="online timestamp key (KEYDIR/timestamp.pem): re-sign before expiry",
    )
    srv.add_argument("--threads", type=int, default=32)
    srv.add_argument("--request-log", type=Path,
                     help="append one line per request to this file (for 'opusi-repo status'; "
                          "license numbers, no addresses)")


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--bind expects HOST:PORT, got {text!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parse_expiry(items: Sequence[str]) -> dict[str, int]:
    result = {}
    for item in items:
        role, sep, days = item.partition("=")
        if not sep or role not in repository.ROLES or not days.isdigit():
            raise UsageError(
                f"--expiry expects ROLE=DAYS with a role of {repository.ROLES}, got {item!r}."
            )
        result[role] = int(days)
    return result


def _work(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = _COMMANDS[args.command]
    return handler(args)


def _init(args: argparse.Namespace) -> int:
    repository.init_repository(args.repo, args.keys, _parse_expiry(args.expiry))
    print(f"Created the repository {args.repo}.")
    print(f"Private keys are in {args.keys} (owner-only). Keep root.pem and targets.pem offline;")
    print("the trusted root to build into the updater is", args.repo / "metadata" / "1.root.json")
    return 0


def _publish(args: argparse.Namespace) -> int:
    result = publish.publish_build(
        args.repo,
        args.keys,
        args.build,
        args.tree,
        ignore_excluded=args.ignore_excluded,
        method=args.method,
        deltas=args.deltas,
    )
    base = f"on top of build {result.previous}" if result.previous else "as the baseline"
    print(
        f"Published build {result.build} {base}: {len(result.diff.added)} added, "
        f"{len(result.diff.changed)} changed, {len(result.diff.deleted)} deleted; "
        f"package {result.package_size:,} bytes, unpacked {result.unpacked_size:,} bytes."
    )
    if result.delta is not None:
        print(f"Delta package {result.delta_size:,} bytes: {len(result.delta.files)} file(s) "
              f"as deltas against build {result.delta.previous}.")
    if result.left_out:
        print(f"Left out {len(result.left_out)} file(s) in customer-data folders:")
        for path in result.left_out:
            print(f"  {path}")
    return 0


def _publish_updater(args: argparse.Namespace) -> int:
    target = publish.publish_updater(
        args.repo, args.keys, args.file, args.platform, args.version
    )
    print(f"Published {target.path} ({target.length:,} bytes, sha256 {target.hashes['sha256']}).")
    return 0


def _list(args: argparse.Namespace) -> int:
    for row in repository.summarize(args.repo):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _resign(args: argparse.Namespace) -> int:
    signer = repository.load_signer(args.timestamp_key)
    done = repository.refresh_timestamp(
        args.repo, signer, min_remaining=timedelta(hours=args.min_remaining_hours)
    )
    print("timestamp.json re-signed." if done else "timestamp.json is still fresh; unchanged.")
    return 0


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=_default_db(), help=DB_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON")


def _default_db() -> str:
    return os.environ.get("OPUSI_DB") or DEFAULT_DB


def _license(args: argparse.Namespace) -> int:
    from updater.publisher.database import SCHEMA_VERSION
    from updater.publisher.licenses import open_registry

    with open_registry(args.db) as registry:  # creates or migrates the schema
        if args.license_command == "migrate":
            if args.json:
                print(json.dumps({"registry": registry.name, "schema": SCHEMA_VERSION}))
            else:
                print(f"The license registry {registry.name} has schema version "
                      f"{SCHEMA_VERSION}, this program's.")
            return 0
        if args.license_command == "add":
            rows = [registry.add(args.number, entitled_until=args.until, note=args.note)]
        elif args.license_command == "revoke":
            rows = [registry.revoke(args.number)]
        else:
            rows = registry.list()
    for lic in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "number": lic.number,
                        "status": lic.status,
                        "note": lic.note,
                        "entitled_until": lic.entitled_until.isoformat()
                        if lic.entitled_until
                        else None,
                    }
                )
            )
        else:
            until = lic.entitled_until.isoformat() if lic.entitled_until else "no end"
            print(f"{lic.number:<20} {lic.status:<8} entitled until {until:<10} {lic.note}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from updater.publisher import serving

    host, port = parse_bind(args.bind)
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together.")
    serving.serve(
        args.repo,
        args.db,
        host,
        port,
        certfile=args.cert,
        keyfile=args.key,
        timestamp_key=args.timestamp_key,
        threads=args.threads,
        request_log=args.request_log,
        ready=lambda p: print(f"Serving {args.repo} on {host}:{p}", flush=True),
    )
    return 0


_COMMANDS = {
    "init": _init,
    "publish": _publish,
    "publish-updater": _publish_updater,
    "list": _list,
    "resign-timestamp": _resign,
    **cli_offer.COMMANDS,
    **cli_desk.COMMANDS,
    "license": _license,
    "serve": _serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opusi-repo``."""
    return run_command(_work, argv)


if __name__ == "__main__":
    sys.exit(main())
