"""Build the frozen programs for tests and the fault suite (``scripts/build``, cached by key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from updater.shared import system

ROOT = Path(__file__).resolve().parents[2]


def build_frozen(trusted_root: Path, out: Path) -> tuple[Path, Path]:
    """Build (or reuse) ``opusi-INSTALLUpdate`` and ``opusi-update`` with ``trusted_root`` in."""
    subprocess.run(
        [str(ROOT / "scripts" / "build"), "--trusted-root", str(trusted_root), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (
        out / system.executable_name("opusi-INSTALLUpdate"),
        out / system.executable_name("opusi-update"),
    )
