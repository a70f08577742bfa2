"""The fault, attack and crash suite: every way an update can go wrong, and its outcome.

Each class of faults is a module here with ``run(suite: Suite) -> list[Outcome]``. A case passes
when the install ended at exactly the old or the new build (program files byte for byte, the
customer-data folders byte-identical) AND the run ended with the documented exit code.
``python -m tests.faults`` (``scripts/faults``) runs them all and prints the table;
``tests/faults/test_faults.py`` runs a smaller configuration.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Vendor, data_snapshot, program_files, vendor_files

#: The classes, in the order of the table, and the module that runs each.
CLASSES: dict[str, str] = {
    "hard kills": "tests.faults.kills",
    "I/O faults": "tests.faults.iofaults",
    "tampered packages": "tests.faults.tampered",
    "metadata attacks": "tests.faults.metadata",
    "malicious archives": "tests.faults.archives",
    "environment": "tests.faults.environment",
    "delta packages": "tests.faults.deltas",
}


@dataclass(frozen=True)
class Suite:
    """What every class gets: a published vendor, its server, the updater to run, a folder.

    Attributes:
        vendor: Repository with builds 1147, 1148, 1150, 1152, 1155 and the test licenses.
        url: The vendor's server on 127.0.0.1.
        updater: Command that runs the updater (the frozen executable, normally).
        base: A scratch folder of the suite's own.
        quick: The smaller configuration for the test suite.
    """

    vendor: Vendor
    url: str
    updater: tuple[str, ...]
    base: Path
    quick: bool

    def run(
        self, install: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the updater on ``install`` unattended, with the vendor's root."""
        command = [
            *self.updater,
            "--install-dir",
            str(install),
            "--trusted-root",
            str(self.vendor.root_file),
            "--yes",
            "--progress",
            "none",
            "--timeout",
            "5",
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@dataclass(frozen=True)
class Outcome:
    """One case: did the install end consistent, and with the documented code?"""

    klass: str
    case: str
    consistent: bool
    code_ok: bool
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.consistent and self.code_ok


@dataclass(frozen=True)
class Before:
    """The install's state before a case, to judge it afterwards."""

    data: dict[str, str]

    @classmethod
    def of(cls, install: Path) -> Before:
        return cls(data=data_snapshot(install))


def ended_at(install: Path, vendor: Vendor, before: Before, builds: Sequence[int]) -> int | None:
    """The build of ``builds`` the install is exactly at, with its data unchanged; else None."""
    if data_snapshot(install) != before.data:
        return None
    files = program_files(install)
    for build in builds:
        if files == vendor_files(vendor.trees[build], build):
            return build
    return None


#: Temp files of the updater a killed run, or one that can no longer delete anything, may leave
#: among the program files; the next run removes them before anything else.
OWN_TEMPS = (".opusi-write-probe-", ".BUILD.tmp", ".opusi-restore")


def own_temps_only(install: Path, vendor: Vendor, build: int) -> bool:
    """True when the program files are ``build``'s but for temp files of the updater's own."""
    files = program_files(install)
    own = [p for p in files if any(t in p.rsplit("/", 1)[-1] for t in OWN_TEMPS)]
    rest = {p: h for p, h in files.items() if p not in own}
    return bool(own) and rest == vendor_files(vendor.trees[build], build)


def outcome(
    klass: str,
    case: str,
    install: Path,
    vendor: Vendor,
    before: Before,
    result: subprocess.CompletedProcess[str] | int,
    codes: Sequence[int],
    builds: Sequence[int] = (1147, 1155),
) -> Outcome:
    """Judge one case: consistent at one of ``builds``, exit code one of ``codes``."""
    code = result if isinstance(result, int) else result.returncode
    build = ended_at(install, vendor, before, builds)
    detail = f"exit {code}, at build {build}"
    if not isinstance(result, int) and code not in codes:
        detail += f": {result.stderr.strip()[-300:]}"
    return Outcome(klass, case, build is not None, code in codes, detail)


def run_classes(suite: Suite, names: Sequence[str] | None = None) -> list[Outcome]:
    """Run the given classes (default: all) and return every outcome."""
    outcomes: list[Outcome] = []
    for name in names or list(CLASSES):
        module = importlib.import_module(CLASSES[name])
        outcomes.extend(module.run(suite))
    return outcomes


def table(outcomes: Sequence[Outcome]) -> str:
    """The figures table: per class, cases tried, consistent, documented code, failures."""
    lines = [
        "| class | cases | install at old or new build, data identical | documented exit code "
        "| failures |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in CLASSES:
        rows = [o for o in outcomes if o.klass == name]
        if not rows:
            continue
        failed = sum(not o.passed for o in rows)
        lines.append(
            f"| {name} | {len(rows)} | {sum(o.consistent for o in rows)} | "
            f"{sum(o.code_ok for o in rows)} | {failed} |"
        )
    total = len(outcomes)
    lines.append(
        f"| **all** | {total} | {sum(o.consistent for o in outcomes)} | "
        f"{sum(o.code_ok for o in outcomes)} | {sum(not o.passed for o in outcomes)} |"
    )
    return "\n".join(lines)
