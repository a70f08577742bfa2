"""``opusi-repo``: the vendor's tool for the repository, the license registry and the server.

Parses arguments and calls :mod:`updater.publisher.repository`, :mod:`updater.publisher.licenses`
and (for ``serve``) :mod:`updater.publisher.serving`; prints results for a person to read. Errors
become exit codes in :mod:`updater.core.report` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from updater.core.errors import UsageError
from updater.core.report import ArgumentParser, run_command
from updater.publisher import publish, repository
from updater.shared import package

DEFAULT_DB = Path("licenses.sqlite3")


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

    wd = sub.add_parser("withdraw", help="stop offering a build that turned out broken "
                                         "(or, with --undo, offer it again)")
    _repo_keys(wd)
    wd.add_argument("--build", type=int, required=True, help="the build to withdraw")
    wd_how = wd.add_mutually_exclusive_group(required=True)
    wd_how.add_argument("--reason", help="why, in a sentence (signed; admins may see it)")
    wd_how.add_argument("--undo", action="store_true", help="offer the build again")

    ro = sub.add_parser("rollout", help="offer a build to a share of licenses and to channels")
    _repo_keys(ro)
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
    _license_parser(sub)
    _serve_parser(sub)
    return parser


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
    for p in (add, revoke, lic_sub.choices["list"]):
        p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"registry file ({DEFAULT_DB})")
        p.add_argument("--json", action="store_true", help="print JSON")


def _serve_parser(sub: argparse._SubParsersAction[ArgumentParser]) -> None:
    srv = sub.add_parser("serve", help="serve the repository to licensed clients")
    srv.add_argument("--repo", type=Path, required=True)
    srv.add_argument("--db", type=Path, default=DEFAULT_DB, help="license registry file")
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


def _parse_bind(text: str) -> tuple[str, int]:
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


def _license(args: argparse.Namespace) -> int:
    from updater.publisher.licenses import open_registry

    with open_registry(args.db) as registry:
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

    host, port = _parse_bind(args.bind)
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
    "keys": _keys,
    "withdraw": _withdraw,
    "rollout": _rollout,
    "status": _status,
    "license": _license,
    "serve": _serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opusi-repo``."""
    return run_command(_work, argv)


if __name__ == "__main__":
    sys.exit(main())
