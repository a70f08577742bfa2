"""Pre-flight checks and OS seams, against real processes, real locks and real folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from updater.core.errors import (
    AlreadyRunningError,
    DiskSpaceError,
    FileLockedError,
    HostStillRunningError,
)
from updater.core.paths import WORK_DIR
from updater.install.preflight import (
    LOCK_NAME,
    check_local,
    check_space,
    check_writable,
    install_lock,
    wait_for_exit,
)
from updater.shared.system import (
    executable_name,
    free_bytes,
    network_location,
    platform_name,
    platform_name_for,
    process_alive,
    read_mount_table,
    remote_fstype_for,
    unc_share_of,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process and mount tests")

# --- waiting for the host ---------------------------------------------------------------------


@posix_only
def test_wait_for_exit_returns_when_the_process_ends() -> None:
    child = subprocess.Popen(["sleep", "0.3"])
    reaper = threading.Thread(target=child.wait)  # reaped at once: no zombie in this test
    reaper.start()
    started = time.monotonic()
    wait_for_exit(child.pid, timeout=10, poll=0.05)
    assert time.monotonic() - started < 5
    reaper.join()


@posix_only
def test_wait_for_exit_times_out_on_a_running_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(HostStillRunningError) as info:
            wait_for_exit(child.pid, timeout=0.3, poll=0.05)
        assert str(child.pid) in info.value.message
        assert info.value.safe == "Nothing was changed."
        assert "all workstations" in info.value.hint
        assert info.value.exit_code == 19
    finally:
        child.kill()
        child.wait()


@posix_only
def test_a_zombie_counts_as_exited() -> None:
    child = subprocess.Popen(["sleep", "0"])
    stat = Path(f"/proc/{child.pid}/stat")
    if not stat.exists():
        child.wait()
        pytest.skip("no /proc here: zombie state cannot be read")
    deadline = time.monotonic() + 5
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "child did not become a zombie"
        time.sleep(0.01)
    try:
        assert not process_alive(child.pid)
        wait_for_exit(child.pid, timeout=0.5, poll=0.05)
    finally:
        child.wait()


def test_process_alive_basics() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(0)
    assert not process_alive(-1)


# --- the install lock -------------------------------------------------------------------------

_HOLDER = """
import sys, time
from pathlib import Path
from updater.install.preflight import install_lock
with install_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process that holds ``tmp_path``'s install lock until it is killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    yield child
    child.kill()
    child.wait()


def test_lock_is_exclusive_across_processes(
    tmp_path: Path, lock_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(AlreadyRunningError) as info, install_lock(tmp_path):
        pass
    assert info.value.safe == "Nothing was changed."
    assert info.value.exit_code == 18


@posix_only
def test_lock_of_a_killed_process_is_free(
    tmp_path: Path, lock_holder: subprocess.Popen[str]
) -> None:
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait()
    assert (tmp_path / WORK_DIR / LOCK_NAME).exists()  # the file stays; the OS lock is gone
    with install_lock(tmp_path):
        pass


def test_lock_is_exclusive_in_one_process_and_released_on_exit(tmp_path: Path) -> None:
    with install_lock(tmp_path), pytest.raises(AlreadyRunningError), install_lock(tmp_path):
        pass
    with install_lock(tmp_path):
        pass


def test_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), install_lock(tmp_path):
        raise RuntimeError("boom")
    with install_lock(tmp_path):
        pass


# --- space and writability --------------------------------------------------------------------


def test_check_space(tmp_path: Path) -> None:
    check_space(tmp_path, 1)
    with pytest.raises(DiskSpaceError) as info:
        check_space(tmp_path, 10**18)
    assert "953674316407 MB" in info.value.message
    assert "MB are free" in info.value.message
    assert "Free at least" in info.value.hint


def test_free_bytes_of_a_missing_folder_is_its_parents(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "not" / "there") > 0


def test_check_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "Program").mkdir()
    check_writable(tmp_path, [Path("Program"), Path("New/Folder")])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["Program"]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody (root included) can create files in: chmod, or ``chattr +i`` as root."""
    folder = tmp_path / "Program"
    folder.mkdir()
    if sys.platform == "win32":
        pytest.skip("a read-only folder needs an ACL on Windows; not set up here")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    done = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True)
    if not done or done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() if done else "chattr not found"
        pytest.skip(f"running as root and 'chattr +i' is unavailable: {reason}")
    yield folder
    subprocess.run([str(chattr), "-i", str(folder)], check=True)


def test_check_writable_names_the_read_only_folder(tmp_path: Path, read_only_folder: Path) -> None:
    with pytest.raises(FileLockedError) as info:
        check_writable(tmp_path, [Path("Program")])
    assert str(read_only_folder) in info.value.message
    assert "administrator" in info.value.hint


# --- network locations ------------------------------------------------------------------------

_MOUNTS = [
    ("/", "ext4"),
    ("/srv/opus", "nfs4"),
    ("/srv/opus/local\\040cache", "ext4"),
    ("/mnt/Opus\\040Server", "cifs"),
    ("/mnt/sshfs", "fuse.sshfs"),
    ("/media/back\\134slash", "smb3"),
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/admin/opus", None),
        ("/srv/opus", "nfs4"),
        ("/srv/opus/Program/opusi.exe", "nfs4"),
        ("/srv/opus/local cache/x", None),  # a local mount nested inside the NFS one
        ("/srv/opus/local cachex", "nfs4"),  # a sibling name, not inside the nested mount
        ("/srv/opus2", None),  # prefix of the string, but not of the path
        ("/mnt/Opus Server/Install", "cifs"),
        ("/mnt/Opus\\040Server/Install", None),  # the escape is undone in the table only
        ("/mnt/sshfs/../sshfs/x", "fuse.sshfs"),
        ("/media/back\\slash/x", "smb3"),
    ],
)
def test_remote_fstype_for(path: str, expected: str | None) -> None:
    assert remote_fstype_for(path, _MOUNTS) == expected


def test_a_later_mount_on_the_same_point_wins() -> None:
    assert (
        remote_fstype_for("/data/x", [("/", "ext4"), ("/data", "nfs"), ("/data", "tmpfs")]) is None
    )
    assert (
        remote_fstype_for("/data/x", [("/", "ext4"), ("/data", "tmpfs"), ("/data", "nfs")]) == "nfs"
    )


def test_no_mount_table_means_local() -> None:
    assert remote_fstype_for("/anything", []) is None


@pytest.mark.skipif(not Path("/proc/self/mountinfo").exists(), reason="no /proc/self/mountinfo")
def test_read_mount_table_has_the_root() -> None:
    assert any(point == "/" for point, _ in read_mount_table())


def test_check_local_passes_on_a_local_folder(tmp_path: Path) -> None:
    assert network_location(tmp_path) is None
    check_local(tmp_path, allow_remote=False)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (r"\\fileserver\opus\Program", r"\\fileserver\opus"),
        ("//fileserver/opus/Program", r"\\fileserver\opus"),
        (r"\\?\UNC\fileserver\opus\Program", r"\\fileserver\opus"),
        (r"\\.\unc\fileserver\opus", r"\\fileserver\opus"),
        (r"\\fileserver", r"\\fileserver"),
        (r"\\?\C:\opus", None),
        (r"C:\opus", None),
        ("/srv/opus", None),
    ],
)
def test_unc_share_of(path: str, expected: str | None) -> None:
    assert unc_share_of(path) == expected


# --- platform names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("win32", "AMD64", "windows-x86_64"),
        ("win32", "ARM64", "windows-aarch64"),
        ("win32", "x86", "windows-x86"),
        ("linux", "x86_64", "linux-x86_64"),
        ("linux", "aarch64", "linux-aarch64"),
        ("darwin", "arm64", "macos-aarch64"),
    ],
)
def test_platform_name_for(system: str, machine: str, expected: str) -> None:
    assert platform_name_for(system, machine) == expected


def test_platform_name_and_executable_name_here() -> None:
    assert platform_name().startswith(("linux-", "windows-", "macos-"))
    expected = "opusi-INSTALLUpdate.exe" if sys.platform == "win32" else "opusi-INSTALLUpdate"
    assert executable_name("opusi-INSTALLUpdate") == expected
