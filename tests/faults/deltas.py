"""Delta packages gone wrong: every case must end exactly at the newest build through the full
packages, or, killed midway, at the old or the new build after the next run.

Builds 1 -> 2 -> 3 of :func:`tests.integration.test_deltas.delta_builds` (a large library
changing a little: its deltas; other large files whole), on a server of their own:

- **damaged delta package**: its bytes on the server no longer match the signed hash: refused,
  the full package fetched instead, exit 0, exactly build 3.
- **wrong delta, signed**: the vendor's tool published a delta that gives a wrong file (every
  hash of the package is right; Velopack #751): the rebuilt file fails the manifest, the full
  package is used, exit 0, exactly build 3.
- **base file changed by hand**: the installed file the delta applies to was changed: the full
  package, exit 0, exactly build 3.
- **killed while rebuilding**: SIGKILL right before each file operation of the staging of the
  delta builds (learned from a counted run), then run again: exit 0, exactly build 3.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

from tests.conftest import Vendor, make_install, make_vendor, served
from tests.faults import Before, Outcome, Suite, outcome
from tests.faults.kills import counted_ops, sample, start
from tests.integration.test_deltas import delta_builds
from tests.support.crash import KILLED
from updater.core.paths import WORK_DIR
from updater.publisher import deltas as publisher_deltas
from updater.shared import delta

KLASS = "delta packages"
OLD, NEW = 1, 3
_folders = count()


@contextmanager
def _served(vendor: Vendor, suite: Suite) -> Iterator[Suite]:
    with served(vendor) as url:
        yield dataclasses.replace(suite, vendor=vendor, url=url)


def _fresh(suite: Suite, name: str) -> Path:
    folder = suite.base / "deltas" / f"{next(_folders)}-{name}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    return make_install(folder, suite.vendor.trees[OLD], OLD, suite.url)


def _judge(suite: Suite, case: str, install: Path, before: Before, result: object,
           killed: int | None = None) -> Outcome:
    judged = outcome(KLASS, case, install, suite.vendor, before, result,  # type: ignore[arg-type]
                     [0], [NEW])
    shutil.rmtree(install, ignore_errors=True)
    if killed is not None and killed != KILLED:
        return Outcome(KLASS, case, judged.consistent, False,
                       f"the run to be killed exited {killed}; {judged.detail}")
    return judged


def _wrong_delta_vendor(base: Path) -> Vendor:
    """A vendor whose tool signed a delta of lib/big.dll that gives a wrong file."""
    real = publisher_deltas._delta_of

    def wrong(old: Path | None, source: Path, entry: object) -> bytes | None:
        if old is None or source.name != "big.dll":
            return real(old, source, entry)  # type: ignore[arg-type]
        broken = bytearray(source.read_bytes())
        broken[len(broken) // 2] ^= 0xFF
        return delta.make(old.read_bytes(), bytes(broken))

    publisher_deltas._delta_of = wrong  # type: ignore[assignment]
    try:
        return make_vendor(base, delta_builds())
    finally:
        publisher_deltas._delta_of = real


def run(suite: Suite) -> list[Outcome]:
    good = make_vendor(suite.base / "delta-vendor", delta_builds())
    wrong = _wrong_delta_vendor(suite.base / "wrong-delta-vendor")
    outcomes = []
    with _served(good, suite) as own:
        outcomes.append(_damaged(own))
        outcomes.append(_changed_base(own))
        outcomes.extend(_kills(own))
    with _served(wrong, suite) as own:
        install = _fresh(own, "wrong")
        before = Before.of(install)
        outcomes.append(_judge(own, "wrong delta, signed by the vendor: full package used",
                               install, before, own.run(install)))
    return outcomes


def _damaged(suite: Suite) -> Outcome:
    pkg = next(p for p in (suite.vendor.repo / "targets" / "deltas").iterdir()
               if p.name.endswith(".2.7z"))
    original = pkg.read_bytes()
    pkg.write_bytes(original[: len(original) // 2] + bytes(len(original) - len(original) // 2))
    try:
        install = _fresh(suite, "damaged")
        before = Before.of(install)
        result = suite.run(install)
    finally:
        pkg.write_bytes(original)
    return _judge(suite, "damaged delta package on the server: full package used", install,
                  before, result)


def _changed_base(suite: Suite) -> Outcome:
    install = _fresh(suite, "changed")
    (install / "lib" / "big.dll").write_bytes(b"patched by hand" * 100)
    before = Before.of(install)
    return _judge(suite, "base file changed by hand: full package used", install, before,
                  suite.run(install))


def _kills(suite: Suite) -> list[Outcome]:
    """Killed right before each operation of the delta builds' staging, then run again."""
    counted = counted_ops(suite, _fresh(suite, "counted"))
    staging = f"{WORK_DIR}/staging"
    moments = [k for k, op in enumerate(counted.ops, 1) if staging in op]
    outcomes = []
    for k in sample(moments, 4 if suite.quick else 24):
        install = _fresh(suite, f"kill-{k}")
        before = Before.of(install)
        killed = start(suite, install, kill_at=counted.ident(k))
        outcomes.append(_judge(
            suite, f"killed while rebuilding at {k} ({counted.ops[k - 1]}), run again",
            install, before, start(suite, install), killed.returncode))
    return outcomes
