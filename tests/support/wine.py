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
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The Wine prefix scripts/windows makes: outside the source tree (its z: drive links to /).
PREFIX = Path(os.environ.get("OPUSI_WINE_PREFIX") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opusi-updater" / "wine-prefix")


def wine_env() -> dict[str, str]:
    """The environment for a Windows program: the project's prefix, no debug output, no display,
    no proxy variables of this machine, and no POSIX folder for the install records (Windows
    keeps them in ProgramData)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "OPUSI_STATE_DIR")
           and "proxy" not in k.lower()}
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


def run_windows(exe: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a Windows program under Wine and wait for it; its exit code is the result's.

    ``env``: variables added to :func:`wine_env` (Wine passes them on to the program)."""
    return subprocess.run(
        ["wine", str(exe), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env={**wine_env(), **(env or {})}, timeout=timeout, errors="replace",
    )


def stop_wineserver() -> None:
    """End the prefix's wineserver and every Windows process in it."""
    subprocess.run(["wineserver", "-k"], env=wine_env(), capture_output=True, timeout=60)


def build_holdfile(out: Path) -> Path:
    """Build ``tests/windows/holdfile.c`` into ``out/holdfile.exe`` with Debian's MinGW."""
    source = ROOT / "tests" / "windows" / "holdfile.c"
    exe = out / "holdfile.exe"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-Wall", "-o", str(exe),
                    str(source)], check=True, capture_output=True, timeout=120)
    return exe


class HeldFile:
    """A Windows process (``holdfile.exe``) holding ``path`` open without write or delete
    sharing, as opus i holds its own files or a virus scanner a file it scans.

    ``with HeldFile(exe, path, folder) as held:`` waits until the handle is open; ``held.pid``
    is the process's Windows id; :meth:`release` lets it close the handle and exit (also done
    when the block ends).
    """

    def __init__(self, holdfile: Path, path: Path, folder: Path) -> None:
        self._command = ["wine", str(holdfile), win_path(path),
                         win_path(folder / "held.ready"), win_path(folder / "held.release")]
        self._ready, self._release = folder / "held.ready", folder / "held.release"
        self.pid = 0

    def __enter__(self) -> HeldFile:
        self._ready.unlink(missing_ok=True)
        self._release.unlink(missing_ok=True)
        self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         env=wine_env())
        deadline = time.monotonic() + 60
        while not self._ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = self._process.communicate()[0] if self._process.poll() is not None else b""
                raise RuntimeError(f"holdfile did not hold the file: {output!r}")
            time.sleep(0.05)
        self.pid = int(self._ready.read_text().strip())
        return self

    def release(self) -> None:
        """Close the handle; the process exits."""
        self._release.touch()
        self._process.communicate(timeout=60)

    def __exit__(self, *exc: object) -> None:
        if self._process.poll() is None:
            self.release()


def add_network_drive(letter: str, target: Path) -> str:
    """Map drive ``letter`` to ``target`` as a drive Windows reports as a network drive.

    Wine keeps a drive's type in ``HKLM\\Software\\Wine\\Drives`` (``network``), which its
    mount manager reads when the wineserver starts: the server is stopped here, so the next
    program sees ``GetDriveTypeW`` return ``DRIVE_REMOTE`` for the letter. Returns ``"N:"``.
    """
    drive = f"{letter.lower()}:"
    link = PREFIX / "dosdevices" / drive
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    subprocess.run(["wine", "reg", "add", r"HKLM\Software\Wine\Drives", "/v", drive, "/t",
                    "REG_SZ", "/d", "network", "/f"], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, env=wine_env(), timeout=120)
    stop_wineserver()
    return drive.upper()


def add_local_drive(letter: str, target: Path) -> str:
    """Map drive ``letter`` to ``target`` (a local drive, as Wine types a link by default);
    the wineserver is stopped so the next program sees it. Returns ``"O:"``."""
    drive = f"{letter.lower()}:"
    link = PREFIX / "dosdevices" / drive
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    stop_wineserver()
    return drive.upper()


def remove_drive(letter: str) -> None:
    """Undo :func:`add_network_drive` or :func:`add_local_drive` (the registry value, the
    drive's link)."""
    drive = f"{letter.lower()}:"
    subprocess.run(["wine", "reg", "delete", r"HKLM\Software\Wine\Drives", "/v", drive, "/f"],
                   stdin=subprocess.DEVNULL, capture_output=True, env=wine_env(), timeout=120)
    (PREFIX / "dosdevices" / drive).unlink(missing_ok=True)
    stop_wineserver()


def kill_windows_processes(marker: str) -> int:
    """SIGKILL every Wine process whose command line holds ``marker`` (a Windows path); return
    how many there were. A Windows program is one or more Linux processes under Wine (the
    one-file .exe: its launcher and its child), so this is a hard kill from outside."""
    killed = 0
    # the whole path, not a prefix: killing a hung run in ...\k15 must not kill the run in
    # ...\k157 beside it (the kill test runs two cases at once; it once did)
    whole = re.compile(re.escape(marker) + r'(?=$|[\s\0"])')
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
            if whole.search(command):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):
            continue
    return killed


def german_locale() -> bool:
    """True when glibc has de_DE.UTF-8, from which Wine derives a German UI language."""
    done = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=30)
    return any(name.lower().replace("-", "") == "de_de.utf8" for name in done.stdout.split())
