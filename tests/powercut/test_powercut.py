"""Real power cuts, a handful: the frozen updater in a Linux guest (QEMU, software emulation)
whose power goes at a chosen moment; a second boot lets the updater recover; the install must
be exactly build 1147 or 1155, the customer data unchanged, ``e2fsck -fn`` clean, and a run
that reported success must have left 1155.

A killed process loses nothing the kernel already has; a power cut loses the page cache and
the running ext4 journal transaction: that is what this tier models (``scripts/powercut
--selftest`` shows it: a file written without fsync is lost, one with fsync is kept). It does
not model a drive that loses writes it had acknowledged, nor NTFS.

Two modes: Linux as it is, and Windows-like: the final ``sync()`` left out (the test hook
``OPUSI_SYNC_ALL=off``; Windows has no such call) and ext4 mounted ``noauto_da_alloc`` (a
rename over a file no longer forces its data out, as on NTFS). The regression case is the one
that once failed: a cut within seconds after the update reported success, Windows-like, left
``BUILD`` at 1155 with hundreds of zero-length program files, and the next run called it up
to date. The full suite is ``scripts/powercut``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import powercut, qemu

pytestmark = [pytest.mark.powercut]


@dataclass(frozen=True)
class Guest:
    """What every case boots: kernel and initramfs, the tools disk, the install, the trees."""

    files: qemu.BootFiles
    tools: Path
    install: Path
    trees: dict[int, Path]
    work: Path


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    if os.geteuid() != 0 and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 missing and not root to install it (scripts/powercut does)")
    qemu.ensure_packages(optional=False)
    work = Path(tempfile.mkdtemp(prefix="powercut-test-"))
    try:
        files, tools, install, trees = powercut.updater_setup(work)
        yield Guest(files, tools, install, trees, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("mode,trigger,delay,recovery", [
    ("linux", "apply", 0.3, "repo"),
    ("windows-like", "apply", 0.6, "norepo"),
    ("windows-like", "done", 8.0, "norepo"),  # the regression: seconds after success
])
def test_power_cut(guest: Guest, mode: str, trigger: str, delay: float, recovery: str) -> None:
    case = powercut.updater_case(guest.files, guest.work, guest.tools, guest.install,
                                 guest.trees, trigger, delay, recovery, False, mode)
    assert case.cut, f"the power was not cut: {case}"
    assert case.ok, f"after the cut: {case}"
