"""``python -m tests.faults [--quick] [--python] [CLASS ...]``: run the suite, print the table.

By default the frozen updater is built (``scripts/build``, with the suite's own repository's
root built in) and run; ``--python`` runs ``python -m updater.install.cli`` instead (faster, for
development). Exits 1 when any case failed, listing the failures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import make_vendor
from tests.faults import CLASSES, Suite, run_classes, table
from updater.publisher.serving import Server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/faults", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smaller configuration")
    parser.add_argument("--python", action="store_true", help="run the updater from source")
    parser.add_argument("classes", nargs="*", metavar="CLASS", help=f"of {list(CLASSES)}")
    args = parser.parse_args(argv)
    unknown = [c for c in args.classes if c not in CLASSES]
    if unknown:
        parser.error(f"unknown classes {unknown}; choose from {list(CLASSES)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opusi-faults-") as scratch:
        base = Path(scratch)
        vendor = make_vendor(base / "vendor")
        if args.python:
            updater: tuple[str, ...] = (sys.executable, "-m", "updater.install.cli")
        else:
            from tests.support.frozen_build import build_frozen

            updater = (str(build_frozen(vendor.root_file, base / "dist")[0]),)
        server = Server(vendor.repo, vendor.db, threads=8)
        server.start()
        try:
            suite = Suite(vendor, f"http://127.0.0.1:{server.port}", updater, base, args.quick)
            outcomes = run_classes(suite, args.classes or None)
        finally:
            server.stop()
    print(table(outcomes))
    print(
        f"\n{len(outcomes)} cases in {time.monotonic() - started:.0f} s "
        f"({'frozen' if not args.python else 'python'} updater{', quick' if args.quick else ''})."
    )
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        print(f"FAILED {o.klass}: {o.case}: {o.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
