"""OS seams of the pre-flight step: processes, network locations, free space, platform names.

Each question the updater asks the operating system is one function here, with a Windows branch
and a POSIX branch, so the rest of the package never tests ``sys.platform`` itself. Reads only:
``/proc`` (process state, mount table) on Linux, the Win32 API (``OpenProcess``,
``GetDriveTypeW``) through ctypes on Windows. Writes nothing.

The decisions are pure functions (:func:`remote_fstype_for`, :func:`unc_share_of`,
:func:`platform_name_for`) so they are tested on any OS; the ctypes calls can only be confirmed
on Windows and their docstrings say so.
"""

from __future__ import annotations

import contextlib
import os
import platform
import posixpath
import re
import shutil
import sys
from pathlib import Path

from updater.core.i18n import _

#: File system types reached over the network (``/proc/self/mountinfo`` spelling).
REMOTE_FSTYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "9p", "afs",
        "ncpfs", "glusterfs", "ceph", "davfs", "fuse.davfs2",
    }
)  # fmt: skip

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_MACHINES = {
    "amd64": "x86_64", "x86_64": "x86_64", "x64": "x86_64",
    "arm64": "aarch64", "aarch64": "aarch64",
    "i386": "x86", "i686": "x86", "x86": "x86",
}  # fmt: skip
_SYSTEMS = {"win32": "windows", "linux": "linux", "darwin": "macos"}

if sys.platform == "win32":  # pragma: no cover - only Windows runs this block
    import ctypes
    from ctypes import wintypes

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    _kernel32.OpenProcess.restype = wintypes.HANDLE
    _kernel32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    _kernel32.WaitForSingleObject.restype = wintypes.DWORD
    _kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    _kernel32.GetExitCodeProcess.restype = wintypes.BOOL
    _kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    _kernel32.GetDriveTypeW.argtypes = [wintypes.LPCWSTR]
    _kernel32.GetDriveTypeW.restype = wintypes.UINT
    _kernel32.GetUserDefaultUILanguage.restype = wintypes.WORD

    _SYNCHRONIZE = 0x00100000
    _PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    _ERROR_ACCESS_DENIED = 5
    _WAIT_OBJECT_0 = 0
    _WAIT_TIMEOUT = 0x102
    _STILL_ACTIVE = 259
    _DRIVE_REMOTE = 4

    def _windows_process_alive(pid: int) -> bool:
        access = _SYNCHRONIZE | _PROCESS_QUERY_LIMITED_INFORMATION
        handle = _kernel32.OpenProcess(access, False, pid)
        if not handle:
            # Access denied means the process exists but belongs to someone we may not open.
            return ctypes.get_last_error() == _ERROR_ACCESS_DENIED
        try:
            state = _kernel32.WaitForSingleObject(handle, 0)
            if state in (_WAIT_OBJECT_0, _WAIT_TIMEOUT):
                return bool(state == _WAIT_TIMEOUT)
            code = wintypes.DWORD()
            if not _kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == _STILL_ACTIVE
        finally:
            _kernel32.CloseHandle(handle)

    def _windows_drive_is_remote(drive: str) -> bool:
        return bool(_kernel32.GetDriveTypeW(drive.rstrip("\\/") + "\\") == _DRIVE_REMOTE)


# --- processes ------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Tell whether process ``pid`` still runs.

    POSIX: ``os.kill(pid, 0)``; a zombie (exited, not yet reaped; state ``Z`` in
    ``/proc/<pid>/stat``) counts as exited. Windows (confirmed only there): ``OpenProcess``
    with ``SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION``, then a zero-timeout
    ``WaitForSingleObject``, falling back to ``GetExitCodeProcess == STILL_ACTIVE`` (which alone
    would mistake a process that exited with code 259 for a running one). Access denied means
    the process exists. A reused pid looks alive on both systems.

    Args:
        pid: The process id; zero or negative ids are never alive.

    Returns:
        True while the process exists and has not exited.
    """
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to another user
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    """The state letter from ``/proc/<pid>/stat``, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = text.rpartition(")")[2].split()
    return fields[0] if fields else None


# --- network locations ------------------------------------------------------------------------


def network_location(path: Path) -> str | None:
    """Describe how ``path`` is reached over the network, or None when it is local.

    Windows (the drive check is confirmed only there): a UNC path (``\\\\server\\share``,
    ``\\\\?\\UNC\\server\\share``) or a drive letter whose ``GetDriveTypeW`` is
    ``DRIVE_REMOTE`` (a mapped network drive); the path as given and as resolved are both
    checked, since resolving may turn a mapped drive into its UNC path. POSIX: the file system
    type of the mount the resolved path lies on, from ``/proc/self/mountinfo``; where there is
    no mount table (macOS) every path counts as local.

    Args:
        path: A folder or file, existing or not.

    Returns:
        A short description ("the network share \\\\srv\\opus", "a network file system
        (nfs4 at /mnt/opus)") or None.
    """
    if sys.platform == "win32":  # pragma: no cover
        return _windows_network_location(path)
    mounts = read_mount_table()
    match = mount_for(str(path.resolve()), mounts)
    if match is None or match[1] not in REMOTE_FSTYPES:
        return None
    # Translators: completes "The installation {install} is on"
    return _("a network file system ({kind} at {mount})", kind=match[1], mount=match[0])


def _windows_network_location(path: Path) -> str | None:  # pragma: no cover
    candidates = [path.absolute()]
    with contextlib.suppress(OSError):
        candidates.append(path.resolve())
    for candidate in candidates:
        share = unc_share_of(str(candidate))
        if share:
            return _("the network share {share}", share=share)
        drive = candidate.drive
        if sys.platform == "win32" and drive and _windows_drive_is_remote(drive):
            return _("the network drive {drive}", drive=drive)
    return None


def unc_share_of(path: str) -> str | None:
    """Return ``\\\\server\\share`` when ``path`` is a Windows UNC path, else None (pure).

    Args:
        path: A Windows path; ``/`` and ``\\`` both count as separators. Device paths
            (``\\\\?\\C:\\...``, ``\\\\.\\C:\\...``) are local unless they name ``UNC``.

    Returns:
        The server and share part, or just ``\\\\server`` when no share is named.
    """
    text = path.replace("/", "\\")
    if text[:4] in ("\\\\?\\", "\\\\.\\"):
        if text[4:8].upper() != "UNC\\":
            return None
        rest = text[8:]
    elif text.startswith("\\\\"):
        rest = text[2:]
    else:
        return None
    parts = [part for part in rest.split("\\") if part][:2]
    return "\\\\" + "\\".join(parts) if parts else None


def read_mount_table() -> list[tuple[str, str]]:
    """Read this process's mounts as ``(mount point, fstype)``, mount points still escaped.

    Reads ``/proc/self/mountinfo``, else ``/proc/mounts``; returns an empty list where neither
    exists. Order is kept: a later entry for the same mount point is mounted over the earlier.
    """
    for source, parse in (
        ("/proc/self/mountinfo", _mountinfo_entry),
        ("/proc/mounts", _mounts_entry),
    ):
        try:
            lines = Path(source).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError:
            continue
        return [entry for entry in map(parse, lines) if entry is not None]
    return []


def _mountinfo_entry(line: str) -> tuple[str, str] | None:
    # "36 35 98:0 /root /mnt/point rw,noatime master:1 - ext3 /dev/root rw": optional
    # fields end at the lone "-", the fstype follows it.
    fields = line.split()
    if "-" not in fields[6:]:
        return None
    separator = fields.index("-", 6)
    return (fields[4], fields[separator + 1]) if len(fields) > separator + 1 else None


def _mounts_entry(line: str) -> tuple[str, str] | None:
    fields = line.split()
    return (fields[1], fields[2]) if len(fields) >= 3 else None


def unescape_mount_point(text: str) -> str:
    r"""Undo the kernel's octal escapes in a mount point (``\040`` space, ``\134`` backslash)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def mount_for(path: str, mounts: list[tuple[str, str]]) -> tuple[str, str] | None:
    """Find the mount ``path`` lies on: the longest matching mount point, the later on a tie.

    Args:
        path: An absolute, resolved POSIX path.
        mounts: ``(mount point, fstype)`` pairs in mount order, mount points as the kernel
            writes them (octal escapes are undone here).

    Returns:
        ``(unescaped mount point, fstype)``, or None when no mount point matches.
    """
    path = posixpath.normpath(path)
    best: tuple[str, str] | None = None
    for raw_point, fstype in mounts:
        point = unescape_mount_point(raw_point)
        inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best


def remote_fstype_for(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """Return the network file system type ``path`` lies on, or None when local (pure).

    Args:
        path: An absolute, resolved POSIX path.
        mounts: ``(mount point, fstype)`` pairs as :func:`read_mount_table` returns them.

    Returns:
        The fstype ("nfs4", "cifs", ...) when it is in :data:`REMOTE_FSTYPES`, else None.
    """
    match = mount_for(path, mounts)
    return match[1] if match is not None and match[1] in REMOTE_FSTYPES else None


# --- space and platform -----------------------------------------------------------------------


def free_bytes(path: Path) -> int:
    """Free bytes for the current user on the drive of ``path`` (or of its nearest existing parent).

    Raises:
        OSError: The drive cannot be queried (disconnected network drive, no permission).
    """
    probe = path.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def platform_name_for(system: str, machine: str) -> str:
    """Name a platform from ``sys.platform`` and ``platform.machine()`` (pure).

    Args:
        system: ``sys.platform`` ("win32", "linux", "darwin").
        machine: ``platform.machine()`` ("AMD64", "x86_64", "ARM64", "aarch64").

    Returns:
        ``"<os>-<arch>"``, e.g. "windows-x86_64", "linux-aarch64"; unknown names pass through
        lower-cased.
    """
    os_name = _SYSTEMS.get(system, system.lower())
    arch = _MACHINES.get(machine.lower(), machine.lower() or "unknown")
    return f"{os_name}-{arch}"


def platform_name() -> str:
    """The platform this process runs on, as the repository names its updater executables.

    On Windows ``platform.machine()`` follows ``PROCESSOR_ARCHITECTURE``, i.e. the architecture
    this process runs as: a 32-bit or emulated x64 process gets the updater of its own kind.
    """
    return platform_name_for(sys.platform, platform.machine())


def executable_name(base: str) -> str:
    """Add ``.exe`` on Windows ("opusi-INSTALLUpdate" -> "opusi-INSTALLUpdate.exe")."""
    if sys.platform == "win32" and not base.lower().endswith(".exe"):
        return base + ".exe"
    return base


# --- language -------------------------------------------------------------------------------

#: Primary language ids (the low 10 bits of a LANGID) of the languages we have.
_WINDOWS_LANGUAGES = {0x07: "de", 0x09: "en"}


def ui_language() -> str | None:
    """The language of the user's interface: "de", "en", or None for any other.

    Windows (confirmed under Wine): ``GetUserDefaultUILanguage``, the display language the
    user chose, not the region's formats. POSIX: the gettext variables in their order
    (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``), the first one set.
    """
    if sys.platform == "win32":  # pragma: no cover - only Windows runs this
        return _WINDOWS_LANGUAGES.get(int(_kernel32.GetUserDefaultUILanguage()) & 0x3FF)
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return _posix_language(value.split(":")[0])
    return None


def _posix_language(value: str) -> str | None:
    head = value.split(".")[0].split("_")[0].lower()
    return head if head in ("de", "en") else None
