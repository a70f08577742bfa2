"""Tampered packages: correctly published packages changed on the server, not re-signed.

A copy of the vendor's repository is served by a server of its own; each case changes the
package file of build 1148 or 1150 in the copy (bit flips at seeded random offsets, truncation,
appended bytes, zeroed ranges, another build's package under this name, another repository's
package) or re-signs the copy's metadata with a foreign key. Every case must end with error 13
(the package failed verification, after one more download) or 12 (the metadata failed), the
install still at build 1147, and not one byte changed outside the updater's own folders.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import make_install
from tests.faults import Before, Outcome, Suite, evil, outcome
from tests.support.trees import snapshot
from updater.publisher import publish, repository
from updater.publisher.serving import Server

KLASS = "tampered packages"
OWN = (
    "Database/SystemFiles/SecuMax2/UpdateFiles",
    "Database/SystemFiles/Logs",
    "Database/SystemFiles/Backups",
)


def install_snapshot(install: Path) -> dict[str, str]:
    """Everything in the install but the updater's own working, log and backup folders."""
    return {
        p: h
        for p, h in snapshot(install).items()
        if not any(p == d + "/" or p.startswith(d + "/") for d in OWN)
    }


@dataclass(frozen=True)
class Served:
    """A copy of the vendor's repository and keys, and its own server."""

    repo: Path
    keys: Path
    url: str


@contextmanager
def served_copy(suite: Suite, name: str) -> Iterator[Served]:
    """Copy the vendor's repository and keys into ``suite.base/name`` and serve the copy."""
    base = suite.base / name
    repo, keys = base / "repo", base / "keys"
    shutil.copytree(suite.vendor.repo, repo)
    shutil.copytree(suite.vendor.keys, keys)
    server = Server(repo, suite.vendor.db, threads=4)
    server.start()
    try:
        yield Served(repo, keys, f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


def run_case(
    suite: Suite,
    klass: str,
    case: str,
    folder: Path,
    url: str,
    codes: Sequence[int],
    args: Sequence[str] = (),
    limit: float = 60.0,
    check: Callable[[Path], str] | None = None,
) -> Outcome:
    """One case: a fresh install of 1147, one run, judged; no byte may change outside own folders.

    ``check`` may look at the install afterwards and return a problem ("" when none).
    """
    install = make_install(folder, suite.vendor.trees[1147], 1147, url)
    before = Before.of(install)
    files = install_snapshot(install)
    started = time.monotonic()
    try:
        result: subprocess.CompletedProcess[str] | int = suite.run(
            install, *args, timeout=limit * 3
        )
    except subprocess.TimeoutExpired:
        result = -1
    seconds = time.monotonic() - started
    judged = outcome(klass, case, install, suite.vendor, before, result, codes, builds=(1147,))
    problems = []
    if install_snapshot(install) != files:
        changed = _changes(files, install_snapshot(install))
        problems.append(f"install changed outside the updater's folders: {changed}")
    if seconds > limit:
        problems.append(f"took {seconds:.0f} s (limit {limit:.0f} s)")
    if check is not None and (problem := check(install)):
        problems.append(problem)
    detail = judged.detail + "".join(f"; {p}" for p in problems) + f" ({seconds:.1f} s)"
    if judged.code_ok and not isinstance(result, int):  # the message says why it was refused
        detail += ": " + " ".join(result.stderr.split())[-240:]
    consistent = judged.consistent and not problems
    shutil.rmtree(folder, ignore_errors=True)
    return Outcome(klass, case, consistent, judged.code_ok, detail)


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)][:5]


def _mutations(data: bytes, seed: int, quick: bool) -> list[tuple[str, bytes]]:
    """Named mutations of ``data``: flips, truncations, appends, zeroed ranges."""
    rng = random.Random(seed)
    n = len(data)
    offsets = [0, 6, 12, 31, 32, 33, n // 2, n - 33, n - 2, n - 1]
    offsets += sorted(rng.randrange(n) for _ in range(4 if quick else 16))
    if quick:
        offsets = [0, 12, 32, n // 2, n - 1, offsets[-1]]
    result = []
    for offset in offsets:
        flipped = bytearray(data)
        flipped[offset] ^= 1 << rng.randrange(8)
        result.append((f"bit flip at {offset}/{n}", bytes(flipped)))
    cuts = [0, 1, 32, n // 2, n - 1] if not quick else [0, n // 2, n - 1]
    result += [(f"truncated to {c} bytes", data[:c]) for c in cuts]
    appends = [b"\x00", b"A" * 4096, rng.randbytes(100)] if not quick else [b"\x00"]
    result += [(f"{len(a)} bytes appended", data + a) for a in appends]
    ranges = [(0, 32), (n // 3, 64), (n - 64, 64)] if not quick else [(n // 3, 64)]
    result += [
        (f"zeroed {k} bytes at {o}", data[:o] + b"\0" * k + data[o + k :]) for o, k in ranges
    ]
    return result


def _foreign_repo(base: Path, suite: Suite) -> Served:
    """Another vendor's repository (own keys) with builds 1147 and 1148 of its own."""
    repo, keys = base / "repo", base / "keys"
    repository.init_repository(repo, keys)
    publish.publish_build(repo, keys, 1147, suite.vendor.trees[1147])
    tree = base / "tree-1148"
    shutil.copytree(suite.vendor.trees[1148], tree)
    (tree / "opusi.exe").write_bytes(b"MZ another vendor's program")
    publish.publish_build(repo, keys, 1148, tree)
    return Served(repo, keys, "")


def run(suite: Suite) -> list[Outcome]:
    """Every tampering case; see the module docstring."""
    outcomes: list[Outcome] = []
    cases = suite.base / "tampered-cases"
    counter = iter(range(10**6))

    def case(name: str, url: str, codes: Sequence[int], args: Sequence[str] = ()) -> None:
        folder = cases / f"{next(counter)}"
        outcomes.append(run_case(suite, KLASS, name, folder, url, codes, args))

    with served_copy(suite, "tampered-copy") as copy:
        for build in (1148, 1150) if not suite.quick else (1148,):
            target = evil.package_path(copy.repo, build)
            original = target.read_bytes()
            for i, (name, data) in enumerate(_mutations(original, build, suite.quick)):
                target.write_bytes(data)
                offline = i % 3 == 2  # every third case from the folder instead of the server
                args = ("--offline", str(copy.repo)) if offline else ()
                case(f"{build}: {name}{' (offline)' if offline else ''}", copy.url, (13,), args)
            for other in (1150, 1155) if build == 1148 else (1148, 1155):
                target.write_bytes(evil.package_path(copy.repo, other).read_bytes())
                case(f"{build}: package of {other} under its name", copy.url, (13,))
            target.write_bytes(original)
        _wrong_key_cases(suite, copy, cases / "wrong-key", case)
    return outcomes


def _wrong_key_cases(suite: Suite, copy: Served, base: Path, case: Callable[..., None]) -> None:
    """Another repository's package: as a file swapped in, and re-signed with its keys."""
    foreign = _foreign_repo(base / "foreign", suite)
    foreign_pkg = evil.package_path(foreign.repo, 1148)
    target = evil.package_path(copy.repo, 1148)
    original = target.read_bytes()
    target.write_bytes(foreign_pkg.read_bytes())
    case("1148: another repository's 1148 package, file swapped", copy.url, (13,))
    target.write_bytes(original)
    # The foreign vendor's keys sign the copy's metadata: first only targets, then all three.
    roles = repository.ROLES[1:]
    real = {r: repository.load_role_signer(copy.repo, copy.keys, r) for r in roles}
    alien = {r: repository.load_signer(foreign.keys / f"{r}.pem") for r in roles}
    for label, signers in (
        ("targets", {**real, "targets": alien["targets"]}),
        ("snapshot", {**real, "snapshot": alien["snapshot"]}),
        ("timestamp", {**real, "timestamp": alien["timestamp"]}),
        ("all roles", alien),
    ):
        if suite.quick and label in ("snapshot", "all roles"):
            continue
        wrong = base / f"signed-{label.replace(' ', '-')}"
        shutil.copytree(copy.repo, wrong)
        evil.sign_with(wrong, signers, {"builds/1148.7z": foreign_pkg})
        server = Server(wrong, suite.vendor.db, threads=4)
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            case(f"1148: another repository's package, {label} signed with its key", url, (12,))
        finally:
            server.stop()
    # The whole foreign repository served to an install that trusts the vendor's root.
    server = Server(foreign.repo, suite.vendor.db, threads=4)
    server.start()
    try:
        case("another vendor's whole repository", f"http://127.0.0.1:{server.port}", (12,))
    finally:
        server.stop()
