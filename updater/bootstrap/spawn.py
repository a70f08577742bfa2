"""The operating system's seam of the bootstrap: start the updater so it outlives the host.

Writes the updater's console output (``updater-output.log``) into the download folder on POSIX.
The Windows branch (detached process, elevation through ``ShellExecuteExW``) runs only there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from updater.core.errors import RefusedByPolicyError
from updater.core.i18n import _

OUTPUT_LOG = "updater-output.log"


def spawn_detached(command: Sequence[str], folder: Path) -> tuple[int, Path | None]:
    """Start ``command`` so it outlives this process and the host; return at once.

    POSIX: a new session (no controlling terminal, no signals from the host's process group),
    stdin from ``/dev/null``, stdout and stderr into ``folder/updater-output.log``. Windows
    (confirmed only there): ``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP``, no console
    handles; if Windows demands elevation (the updater's manifest asks for administrator
    rights, error 740), it is started through ``ShellExecuteExW`` with the ``runas`` verb,
    which shows the UAC prompt.

    Returns:
        The process id and the output log (None on Windows: the updater logs into the install).

    Raises:
        RefusedByPolicyError: The system refused to run the program (noexec, AppLocker, ...).
    """
    try:
        if sys.platform == "win32":  # pragma: no cover - only Windows runs this
            return _spawn_windows(command, folder), None
        output = folder / OUTPUT_LOG
        with output.open("ab") as handle:
            process = subprocess.Popen(
                list(command), cwd=folder, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        return process.pid, output
    except OSError as e:
        raise RefusedByPolicyError(
            _("The system refused to start the downloaded updater {updater}: {e}.",
              updater=command[0], e=e),
            hint=_("If the temp folder may not run programs, pass --download-dir with one that "
                   "may. Nothing was changed."),
        ) from e


if sys.platform == "win32":  # pragma: no cover - only Windows runs this block
    import ctypes
    from ctypes import wintypes

    _ERROR_ELEVATION_REQUIRED = 740
    _SEE_MASK_NOCLOSEPROCESS = 0x40
    _SW_SHOWNORMAL = 1

    class _ShellExecuteInfo(ctypes.Structure):
        _fields_ = [
            ("cbSize", wintypes.DWORD), ("fMask", ctypes.c_ulong), ("hwnd", wintypes.HWND),
            ("lpVerb", wintypes.LPCWSTR), ("lpFile", wintypes.LPCWSTR),
            ("lpParameters", wintypes.LPCWSTR), ("lpDirectory", wintypes.LPCWSTR),
            ("nShow", ctypes.c_int), ("hInstApp", wintypes.HINSTANCE),
            ("lpIDList", ctypes.c_void_p), ("lpClass", wintypes.LPCWSTR),
            ("hkeyClass", wintypes.HKEY), ("dwHotKey", wintypes.DWORD),
            ("hIconOrMonitor", wintypes.HANDLE), ("hProcess", wintypes.HANDLE),
        ]

    def _spawn_windows(command: Sequence[str], folder: Path) -> int:
        flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            process = subprocess.Popen(
                list(command), cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, creationflags=flags, close_fds=True,
            )
        except OSError as e:
            if getattr(e, "winerror", None) != _ERROR_ELEVATION_REQUIRED:
                raise
            return _spawn_elevated(command, folder)
        return process.pid

    def _spawn_elevated(command: Sequence[str], folder: Path) -> int:
        info = _ShellExecuteInfo()
        info.cbSize = ctypes.sizeof(info)
        info.fMask = _SEE_MASK_NOCLOSEPROCESS
        info.lpVerb, info.lpFile = "runas", command[0]
        info.lpParameters = subprocess.list2cmdline(list(command[1:]))
        info.lpDirectory, info.nShow = str(folder), _SW_SHOWNORMAL
        shell32 = ctypes.WinDLL("shell32", use_last_error=True)
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        if not shell32.ShellExecuteExW(ctypes.byref(info)):
            raise ctypes.WinError(ctypes.get_last_error())  # 1223: the user declined UAC
        try:
            return int(kernel32.GetProcessId(info.hProcess))
        finally:
            kernel32.CloseHandle(info.hProcess)
