"""Metadata attacks, as in The Update Framework: every one refused in bounded time, nothing applied.

Each case works on its own copy of the vendor's repository, key folder and license registry,
served by its own :class:`~updater.publisher.serving.Server` (or, for the broken-transport cases,
by a raw-socket server of :mod:`tests.support.rawserver` that serves the copy's files), and
tampers only with that copy: signing with :mod:`tuf.api.metadata` directly, as an attacker
holding (or lacking) a key would. The suite's own vendor is never changed.

Cases: rollback (timestamp, snapshot, targets, the whole old set) after the client has seen
newer metadata; fast-forward with the real timestamp key, accepted, then stuck until the vendor
rotates the timestamp key, then recovered; a timestamp naming a snapshot that does not exist;
freeze (expired timestamp, snapshot, targets); mix-and-match; wrong keys; a retired key; more
bytes than allowed or signed; a trickling and a stalling server. Refusals must come within the
bound given in the case's name, and nothing outside the updater's own working state and logs
may change in the install.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from tests.conftest import make_install
from tests.faults import Before, Outcome, Suite, outcome
from tests.support.rawserver import RawServer, reply_body, reply_endless, reply_stall, reply_trickle
from tests.support.trees import snapshot
from updater.publisher.repository import load_signer
from updater.publisher.serving import Server

KLASS = "metadata attacks"
#: Seconds within which an ordinary refusal must come (a frozen start included).
BOUND = 20.0
#: The refusal of a trickling server: the 30 s throughput window, plus a start and slack.
TRICKLE_BOUND = 45.0
#: What the updater may write into an install even when it refuses: its state and its logs.
OWN_STATE = ("Database/SystemFiles/SecuMax2/UpdateFiles/", "Database/SystemFiles/Logs/")
_SERIALIZER = JSONSerializer(compact=False)
_counter = itertools.count()
_counter_lock = threading.Lock()


# --- the copy of the vendor's repository, served ------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A copy of the vendor's repository, keys and registry, and the URL serving it."""

    folder: Path
    repo: Path
    keys: Path
    db: Path
    url: str

    @property
    def meta(self) -> Path:
        return self.repo / "metadata"


def unique_folder(suite: Suite, name: str) -> Path:
    """A new folder below the suite's scratch folder."""
    with _counter_lock:
        number = next(_counter)
    folder = suite.base / f"{name}-{number}"
    folder.mkdir(parents=True)
    return folder


def copy_vendor(suite: Suite, name: str) -> tuple[Path, Path, Path, Path]:
    """Copy the vendor's repository, keys and registry; return (folder, repo, keys, db)."""
    folder = unique_folder(suite, name)
    repo, keys, db = folder / "repo", folder / "keys", folder / "licenses.sqlite3"
    shutil.copytree(suite.vendor.repo, repo)
    shutil.copytree(suite.vendor.keys, keys)
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(suite.vendor.db) + suffix)
        if source.exists():
            shutil.copyfile(source, Path(str(db) + suffix))
    return folder, repo, keys, db


@contextlib.contextmanager
def served_copy(suite: Suite, name: str) -> Iterator[Served]:
    """A copy of the vendor, served by its own real server for the duration of the block."""
    folder, repo, keys, db = copy_vendor(suite, name)
    server = Server(repo, db, threads=4)
    server.start()
    try:
        yield Served(folder, repo, keys, db, f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


@contextlib.contextmanager
def raw_copy(suite: Suite, name: str) -> Iterator[tuple[Served, RawServer]]:
    """A copy of the vendor whose files a raw-socket server serves; routes can be overridden."""
    folder, repo, keys, db = copy_vendor(suite, name)
    raw = RawServer()
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if path.is_file() and rel.startswith(("metadata/", "targets/")):
            raw.routes["/" + rel] = reply_body(path.read_bytes())
    try:
        yield Served(folder, repo, keys, db, f"http://127.0.0.1:{raw.port}"), raw
    finally:
        raw.close()


def target_path(served: Served, build: int) -> Path:
    """The package file of ``build`` in the copy (consistent-snapshot name)."""
    return next((served.repo / "targets" / "builds").glob(f"*.{build}.7z"))


# --- signing as the vendor, or as an attacker ----------------------------------------------------


def read(served: Served, name: str) -> Metadata[Any]:
    return Metadata.from_file(str(served.meta / name))


def write(served: Served, name: str, md: Metadata[Any], signer: Signer | None) -> None:
    """Sign ``md`` with ``signer`` (replacing its signatures; None: keep them) and write it."""
    if signer is not None:
        md.signatures.clear()
        md.sign(signer)
    (served.meta / name).write_bytes(md.to_bytes(_SERIALIZER))


def key(served: Served, role: str) -> Signer:
    return load_signer(served.keys / f"{role}.pem")


def versions(served: Served) -> tuple[int, int, int]:
    """The (timestamp, snapshot, targets) versions the copy serves now."""
    ts = read(served, "timestamp.json").signed
    snap = read(served, f"{ts.snapshot_meta.version}.snapshot.json").signed
    return ts.version, ts.snapshot_meta.version, snap.meta["targets.json"].version


def _expires(days: float = 7) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def put_timestamp(
    served: Served,
    version: int,
    snapshot_version: int,
    signer: Signer | None = None,
    expires: datetime | None = None,
) -> None:
    """Write ``timestamp.json`` (default: signed with the real timestamp key)."""
    md = Metadata(
        Timestamp(
            version=version,
            expires=expires or _expires(),
            snapshot_meta=MetaFile(version=snapshot_version),
        )
    )
    write(served, "timestamp.json", md, signer or key(served, "timestamp"))


def put_snapshot(
    served: Served,
    version: int,
    targets_version: int,
    signer: Signer | None = None,
    expires: datetime | None = None,
) -> None:
    """Write ``<version>.snapshot.json`` (default: signed with the real snapshot key)."""
    md = Metadata(
        Snapshot(
            version=version,
            expires=expires or _expires(365),
            meta={"targets.json": MetaFile(version=targets_version)},
        )
    )
    write(served, f"{version}.snapshot.json", md, signer or key(served, "snapshot"))


def put_targets(
    served: Served,
    version: int,
    from_version: int,
    signer: Signer | None = None,
    expires: datetime | None = None,
) -> None:
    """Write ``<version>.targets.json``: the targets of ``from_version``, re-versioned, signed."""
    md: Metadata[Targets] = read(served, f"{from_version}.targets.json")
    md.signed.version = version
    md.signed.expires = expires or _expires(365)
    write(served, f"{version}.targets.json", md, signer or key(served, "targets"))


def bump(served: Served, **signers: Signer | None) -> tuple[int, int, int]:
    """Publish new versions of targets, snapshot and timestamp (same targets); return them."""
    ts, snap, targets = versions(served)
    put_targets(served, targets + 1, targets, signers.get("targets"))
    put_snapshot(served, snap + 1, targets + 1, signers.get("snapshot"))
    put_timestamp(served, ts + 1, snap + 1, signers.get("timestamp"))
    return ts + 1, snap + 1, targets + 1


def rotate_timestamp_key(served: Served) -> CryptoSigner:
    """The vendor's rotation: a new root version, signed by the root key, with a new timestamp key.

    Returns:
        The new timestamp key; the old one is retired (no longer in the root).
    """
    newest = max(int(p.name.split(".")[0]) for p in served.meta.glob("*.root.json"))
    md: Metadata[Root] = read(served, f"{newest}.root.json")
    new = CryptoSigner.generate_ed25519()
    for keyid in list(md.signed.roles["timestamp"].keyids):
        md.signed.revoke_key(keyid, "timestamp")
    md.signed.add_key(new.public_key, "timestamp")
    md.signed.version = newest + 1
    md.signed.expires = _expires(365)
    write(served, f"{newest + 1}.root.json", md, key(served, "root"))
    shutil.copyfile(served.meta / f"{newest + 1}.root.json", served.meta / "root.json")
    return new


# --- running and judging a case ------------------------------------------------------------


def new_install(suite: Suite, served_folder: Path, url: str) -> Path:
    """An install of 1147 next to the copy it is served from."""
    return make_install(served_folder / "opusi", suite.vendor.trees[1147], 1147, url)


def own_files(install: Path) -> dict[str, str]:
    """Everything in the install but the updater's own working state and logs."""
    return {p: h for p, h in snapshot(install).items() if not p.startswith(OWN_STATE)}


def run_case(
    suite: Suite,
    klass: str,
    case: str,
    install: Path,
    url: str,
    codes: Sequence[int],
    *,
    bound: float = BOUND,
    builds: Sequence[int] = (1147,),
    args: Sequence[str] = (),
    nothing_written: bool = True,
) -> Outcome:
    """Run the updater on ``install`` against ``url``; judge code, state and elapsed time.

    The case's name gets the documented codes and the time bound; a run slower than the bound
    fails, and so does one that changed anything but the updater's own state (when
    ``nothing_written``).
    """
    before, files = Before.of(install), own_files(install)
    started = time.monotonic()
    result = suite.run(install, "--server", url, *args, timeout=bound + 60)
    elapsed = time.monotonic() - started
    label = f"{case} ({'/'.join(map(str, codes))}, <= {bound:.0f} s)"
    judged = outcome(klass, label, install, suite.vendor, before, result, codes, builds)
    detail = f"{judged.detail}, {elapsed:.1f} s"
    if result.returncode in codes and result.returncode != 0:
        detail += f": {error_message(result.stderr)}"
    if elapsed > bound:
        judged = replace(judged, code_ok=False)
        detail += f": slower than {bound:.0f} s"
    if nothing_written and own_files(install) != files:
        changed = sorted(set(own_files(install).items()) ^ set(files.items()))[:3]
        judged = replace(judged, consistent=False)
        detail += f": the install was written to ({changed})"
    return replace(judged, detail=detail)


def error_message(text: str) -> str:
    """The message line of the updater's error report on stderr (after "Error N: title.")."""
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("Error ")]
    line = lines[heads[-1] + 1] if heads and heads[-1] + 1 < len(lines) else ""
    return line.strip()[:200]


def checked(suite: Suite, install: Path, url: str) -> str | None:
    """Run ``--check`` so the client caches the metadata it sees; None, or what went wrong."""
    result = suite.run(install, "--server", url, "--check")
    return None if result.returncode == 0 else f"--check gave {result.returncode}: {result.stderr}"


def precondition_failed(case: str, why: str) -> Outcome:
    return Outcome(KLASS, case, False, False, f"set-up failed: {why.strip()[-300:]}")


Case = Callable[[Suite], list[Outcome]]


# --- rollback --------------------------------------------------------------------------------


def _rollback(suite: Suite, case: str, attack: Callable[[Served, Path], None]) -> list[Outcome]:
    """The client sees newer metadata (``--check``), then the server serves older ones."""
    with served_copy(suite, "rollback") as served:
        old = served.folder / "old-metadata"
        shutil.copytree(served.meta, old)
        bump(served)
        install = new_install(suite, served.folder, served.url)
        if why := checked(suite, install, served.url):
            return [precondition_failed(case, why)]
        attack(served, old)
        return [run_case(suite, KLASS, case, install, served.url, (12,))]


def rollback_timestamp(suite: Suite) -> list[Outcome]:
    def attack(served: Served, old: Path) -> None:
        shutil.copyfile(old / "timestamp.json", served.meta / "timestamp.json")

    return _rollback(suite, "rollback: the older timestamp.json replayed", attack)


def rollback_all(suite: Suite) -> list[Outcome]:
    def attack(served: Served, old: Path) -> None:
        shutil.rmtree(served.meta)
        shutil.copytree(old, served.meta)

    return _rollback(suite, "rollback: the whole older metadata set served", attack)


def rollback_snapshot(suite: Suite) -> list[Outcome]:
    def attack(served: Served, old: Path) -> None:
        ts, snap, _ = versions(served)
        put_timestamp(served, ts + 1, snap - 1)  # newer timestamp, older snapshot

    return _rollback(suite, "rollback: a new timestamp naming the older snapshot", attack)


def rollback_targets(suite: Suite) -> list[Outcome]:
    def attack(served: Served, old: Path) -> None:
        ts, snap, targets = versions(served)
        put_snapshot(served, snap + 1, targets - 1)  # newer snapshot, older targets
        put_timestamp(served, ts + 1, snap + 1)

    return _rollback(suite, "rollback: a new snapshot naming the older targets", attack)


# --- fast-forward ------------------------------------------------------------------------------


def fast_forward(suite: Suite) -> list[Outcome]:
    """A stolen timestamp key signs version 2**31: accepted; stuck until the key is rotated."""
    results = []
    with served_copy(suite, "fast-forward") as served:
        ts, snap, _ = versions(served)
        install = new_install(suite, served.folder, served.url)
        put_timestamp(served, 2**31, snap)
        results.append(
            run_case(
                suite,
                KLASS,
                "fast-forward: timestamp version 2**31 signed with the real key is accepted "
                "(--check)",
                install,
                served.url,
                (0,),
                args=("--check",),
            )
        )
        put_timestamp(served, ts + 1, snap)  # the vendor's next timestamp, same key
        results.append(
            run_case(
                suite,
                KLASS,
                "fast-forward: afterwards the vendor's lower timestamp is refused",
                install,
                served.url,
                (12,),
            )
        )
        new_key = rotate_timestamp_key(served)  # recovery: TUF's answer is a key rotation
        put_timestamp(served, ts + 2, snap, new_key)
        results.append(
            run_case(
                suite,
                KLASS,
                "fast-forward: recovered after the vendor rotates the timestamp key (update)",
                install,
                served.url,
                (0,),
                builds=(1155,),
                nothing_written=False,
            )
        )
    return results


def missing_snapshot(suite: Suite) -> list[Outcome]:
    """A timestamp, signed with the real key, naming a snapshot version that does not exist."""
    with served_copy(suite, "missing-snapshot") as served:
        ts, _, _ = versions(served)
        put_timestamp(served, ts + 1, 999_999)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "fast-forward: timestamp naming a snapshot version that does not exist",
                install,
                served.url,
                (23,),
            )
        ]


# --- freeze ---------------------------------------------------------------------------------


def _expired(role: str, checked_first: bool) -> Case:
    def case(suite: Suite) -> list[Outcome]:
        name = f"freeze: expired {role}" + (
            " (client saw the current one)" if checked_first else ""
        )
        with served_copy(suite, f"freeze-{role}") as served:
            install = new_install(suite, served.folder, served.url)
            if checked_first and (why := checked(suite, install, served.url)):
                return [precondition_failed(name, why)]
            past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
            ts, snap, targets = versions(served)
            if role == "timestamp":
                put_timestamp(served, ts + 1, snap, expires=past)
            elif role == "snapshot":
                put_snapshot(served, snap + 1, targets, expires=past)
                put_timestamp(served, ts + 1, snap + 1)
            else:
                put_targets(served, targets + 1, targets, expires=past)
                put_snapshot(served, snap + 1, targets + 1)
                put_timestamp(served, ts + 1, snap + 1)
            return [run_case(suite, KLASS, name, install, served.url, (12,))]

    return case


# --- mix-and-match -----------------------------------------------------------------------------


def mix_targets_under_newer_name(suite: Suite) -> list[Outcome]:
    """The older targets.json served under the name of the current version."""
    with served_copy(suite, "mix-targets") as served:
        _, _, targets = versions(served)
        old = served.meta / f"{targets - 1}.targets.json"
        shutil.copyfile(old, served.meta / f"{targets}.targets.json")
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                f"mix-and-match: targets v{targets - 1} served as {targets}.targets.json",
                install,
                served.url,
                (12,),
            )
        ]


def mix_snapshot_names_other_targets(suite: Suite) -> list[Outcome]:
    """A new snapshot (real key) names a targets version whose file holds another version."""
    with served_copy(suite, "mix-snapshot") as served:
        ts, snap, targets = versions(served)
        shutil.copyfile(
            served.meta / f"{targets}.targets.json", served.meta / f"{targets + 1}.targets.json"
        )
        put_snapshot(served, snap + 1, targets + 1)
        put_timestamp(served, ts + 1, snap + 1)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                f"mix-and-match: snapshot names targets v{targets + 1}, the file is v{targets}",
                install,
                served.url,
                (12,),
            )
        ]


def mix_snapshot_under_newer_name(suite: Suite) -> list[Outcome]:
    """The older snapshot.json served under the name the timestamp gives."""
    with served_copy(suite, "mix-snapshot-name") as served:
        _, snap, _ = versions(served)
        shutil.copyfile(
            served.meta / f"{snap - 1}.snapshot.json", served.meta / f"{snap}.snapshot.json"
        )
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                f"mix-and-match: snapshot v{snap - 1} served as {snap}.snapshot.json",
                install,
                served.url,
                (12,),
            )
        ]


# --- wrong and retired keys ------------------------------------------------------------------


def _wrong_key(role: str) -> Case:
    def case(suite: Suite) -> list[Outcome]:
        with served_copy(suite, f"wrong-key-{role}") as served:
            install = new_install(suite, served.folder, served.url)
            stranger = CryptoSigner.generate_ed25519()
            if role == "root":
                md: Metadata[Root] = read(served, "1.root.json")
                md.signed.version = 2
                for r in ("timestamp", "snapshot", "targets"):
                    md.signed.add_key(stranger.public_key, r)
                write(served, "2.root.json", md, stranger)
            else:
                bump(served, **{role: stranger})
            return [
                run_case(
                    suite,
                    KLASS,
                    f"wrong key: {role} signed with a key not in the root",
                    install,
                    served.url,
                    (12,),
                )
            ]

    return case


def retired_key(suite: Suite) -> list[Outcome]:
    """Root v2 retires the timestamp key; a timestamp signed with the old one is refused."""
    results = []
    with served_copy(suite, "retired-key") as served:
        install = new_install(suite, served.folder, served.url)
        ts, snap, _ = versions(served)
        new_key = rotate_timestamp_key(served)
        put_timestamp(served, ts + 1, snap, new_key)
        if why := checked(suite, install, served.url):
            return [precondition_failed("retired key", why)]
        put_timestamp(served, ts + 2, snap)  # the retired key, as a thief of it would sign
        results.append(
            run_case(
                suite,
                KLASS,
                "retired key: timestamp signed with the timestamp key root v2 retired",
                install,
                served.url,
                (12,),
            )
        )
        fresh = make_install(served.folder / "fresh", suite.vendor.trees[1147], 1147, served.url)
        results.append(
            run_case(
                suite,
                KLASS,
                "retired key: the same, for a client that never saw root v2",
                fresh,
                served.url,
                (12,),
            )
        )
    return results


# --- more bytes than allowed or signed ---------------------------------------------------------


def long_timestamp(suite: Suite) -> list[Outcome]:
    """timestamp.json, validly signed, padded beyond python-tuf's 16 KiB limit."""
    with served_copy(suite, "long-timestamp") as served:
        path = served.meta / "timestamp.json"
        path.write_bytes(path.read_bytes() + b" " * 20000)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "more bytes: timestamp.json padded to 20 KB beyond its 16 KiB limit",
                install,
                served.url,
                (12,),
            )
        ]


def long_root(suite: Suite) -> list[Outcome]:
    """A correctly signed root v2 padded beyond the 512 KB limit for roots."""
    with served_copy(suite, "long-root") as served:
        md: Metadata[Root] = read(served, "1.root.json")
        md.signed.version = 2
        write(served, "2.root.json", md, key(served, "root"))
        path = served.meta / "2.root.json"
        path.write_bytes(path.read_bytes() + b" " * 600_000)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "more bytes: 2.root.json padded to 600 KB beyond its 512 KB limit",
                install,
                served.url,
                (12,),
            )
        ]


def endless_timestamp(suite: Suite) -> list[Outcome]:
    """timestamp.json as an endless body without Content-Length."""
    with raw_copy(suite, "endless-timestamp") as (served, raw):
        raw.routes["/metadata/timestamp.json"] = reply_endless()
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "more bytes: timestamp.json an endless body",
                install,
                served.url,
                (12,),
            )
        ]


def long_package(suite: Suite) -> list[Outcome]:
    """A package with 100 KB of junk appended: more than its signed length."""
    with served_copy(suite, "long-package") as served:
        path = target_path(served, 1148)
        path.write_bytes(path.read_bytes() + b"\x00junk" * 20000)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "more bytes: package 1148 with 100 KB appended beyond its signed length",
                install,
                served.url,
                (13,),
            )
        ]


def endless_package(suite: Suite) -> list[Outcome]:
    with raw_copy(suite, "endless-package") as (served, raw):
        rel = target_path(served, 1150).relative_to(served.repo).as_posix()
        raw.routes["/" + rel] = reply_endless()
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "more bytes: package 1150 an endless body",
                install,
                served.url,
                (13,),
            )
        ]


# --- slow servers ------------------------------------------------------------------------------


def _trickle(what: str, every: float) -> Case:
    def case(suite: Suite) -> list[Outcome]:
        with raw_copy(suite, f"trickle-{what}") as (served, raw):
            if what == "timestamp":
                route = "/metadata/timestamp.json"
            else:
                route = "/" + target_path(served, 1148).relative_to(served.repo).as_posix()
            raw.routes[route] = reply_trickle(100_000, every=every)
            install = new_install(suite, served.folder, served.url)
            return [
                run_case(
                    suite,
                    KLASS,
                    f"slow server: {what} trickled one byte every {every:g} s, --timeout 5",
                    install,
                    served.url,
                    (6,),
                    bound=TRICKLE_BOUND,
                )
            ]

    return case


def stall_package(suite: Suite) -> list[Outcome]:
    with raw_copy(suite, "stall") as (served, raw):
        rel = target_path(served, 1155).relative_to(served.repo).as_posix()
        raw.routes["/" + rel] = reply_stall(100_000, sent=1000)
        install = new_install(suite, served.folder, served.url)
        return [
            run_case(
                suite,
                KLASS,
                "slow server: package 1155 stalls after 1000 bytes, --timeout 5",
                install,
                served.url,
                (6,),
            )
        ]


# --- the class --------------------------------------------------------------------------------

QUICK: tuple[Case, ...] = (
    _trickle("timestamp", 3.0),  # the slowest first: it runs while the others do
    rollback_timestamp,
    rollback_targets,
    fast_forward,
    _expired("timestamp", checked_first=True),
    mix_targets_under_newer_name,
    _wrong_key("snapshot"),
    retired_key,
    long_timestamp,
    long_package,
    stall_package,
)
FULL: tuple[Case, ...] = (
    *QUICK,
    _trickle("package", 2.0),
    rollback_all,
    rollback_snapshot,
    missing_snapshot,
    _expired("timestamp", checked_first=False),
    _expired("snapshot", checked_first=False),
    _expired("targets", checked_first=True),
    mix_snapshot_names_other_targets,
    mix_snapshot_under_newer_name,
    _wrong_key("timestamp"),
    _wrong_key("targets"),
    _wrong_key("root"),
    long_root,
    endless_timestamp,
    endless_package,
)


def run_cases(suite: Suite, cases: Sequence[Case], workers: int = 4) -> list[Outcome]:
    """Run independent cases side by side (each has its own copy, server and install)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(case, suite) for case in cases]
        return [o for future in futures for o in future.result()]


def run(suite: Suite) -> list[Outcome]:
    """Every metadata attack (a subset in quick mode)."""
    return run_cases(suite, QUICK if suite.quick else FULL)
