"""The Windows programs under Wine: build them (``scripts/windows``) and run them.

``scripts/windows`` sets up Wine, the verified Windows CPython and the pinned Windows wheels
once (cached in ``build/windows/``) and builds ``opusi-INSTALLUpdate.exe`` and
``opusi-update.exe`` from the project's own spec. Here they are run with ``wine``, stdin from
``/dev/null`` and stdout/stderr through pipes (Wine 8.0 stops a Python program whose standard
streams are regular files), in the prefix the script made. Linux paths reach them through
Wine's ``Z:`` drive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / "build" / "windows" / "prefix"


def wine_env() -> dict[str, str]:
    """The environment for a Windows program: the project's prefix, no debug output, no display,
    no proxy variables of this machine."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY") and "proxy" not in k.lower()}
    env.update(WINEPREFIX=str(PREFIX), WINEARCH="win64", WINEDEBUG="-all")
    return env


def win_path(path: Path) -> str:
    """``path`` as a Windows program sees it (Wine maps ``/`` to ``Z:\\``)."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def wine() -> str | None:
    """The ``wine`` command, if installed."""
    return shutil.which("wine")


def build_windows(trusted_root: Path, out: Path) -> tuple[Path, Path]:
    """Build (or reuse) both .exe files with ``trusted_root`` built in; return their paths."""
    subprocess.run(
        [str(ROOT / "scripts" / "windows"), "--trusted-root", str(trusted_root), "--out",
         str(out)],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=3600,
    )
    return out / "opusi-INSTALLUpdate.exe", out / "opusi-update.exe"


def run_windows(exe: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a Windows program under Wine and wait for it; its exit code is the result's."""
    return subprocess.run(
        ["wine", str(exe), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=wine_env(), timeout=timeout, errors="replace",
    )


def stop_wineserver() -> None:
    """End the prefix's wineserver and every Windows process in it."""
    subprocess.run(["wineserver", "-k"], env=wine_env(), capture_output=True, timeout=60)
