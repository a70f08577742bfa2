"""Power cuts for the crash tests: a small Linux guest under QEMU whose power is cut by SIGKILL.

What it models: a machine whose power fails while a program writes. The guest's page cache,
the file system's running journal transaction (ext4) or uncommitted transaction and log tree
(btrfs) and QEMU's requests still in flight are lost; what the guest's kernel had written to
the virtual disk (``cache=none``: straight into the image file) is kept. The guest is booted
again (the file system recovers on mounting, as after a real outage), a recovery command runs,
and the host checks the image without mounting it (``e2fsck -fn`` and ``debugfs rdump``, or
``btrfs check --readonly`` and ``btrfs restore``).

The pieces: :func:`ensure_packages` (QEMU, a Debian cloud kernel, busybox, e2fsprogs,
btrfs-progs from apt), :func:`build_boot` (the kernel and a cached initramfs: busybox, the
virtio, ext4 and btrfs modules, and glibc for a frozen PyInstaller program), :func:`make_image`
(images made by ``mke2fs -d`` or ``mkfs.btrfs --rootdir``, nothing mounted on the host),
:func:`boot` (one boot; cut the power when a line appears on the serial console), :func:`fsck`
and :func:`extract`. No KVM: ``-accel tcg``.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path.home() / ".cache" / "opusi-updater" / "powercut"
#: Debian package -> a file that shows it is installed.
PACKAGES = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "linux-image-cloud-amd64": "",  # any /boot/vmlinuz-*-cloud-amd64
    "busybox-static": "/bin/busybox",
    "e2fsprogs": "/sbin/mke2fs",
}
OPTIONAL_PACKAGES = {"btrfs-progs": "/sbin/mkfs.btrfs"}
#: Modules the guest needs to see a virtio disk and mount ext4 or btrfs (their dependencies are
#: added; the ones built into the kernel are skipped: Debian's cloud kernel has ext4 and crc32c
#: built in).
MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "btrfs")
#: The file systems the install disk can have (the tools disk is always ext4).
FILESYSTEMS = ("ext4", "btrfs")
#: glibc and friends a PyInstaller program expects on the system (it bundles everything else).
SYSTEM_LIBS = ("libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
               "libutil.so.1", "libz.so.1", "libgcc_s.so.1", "libcrypt.so.1", "libresolv.so.2")
LIB_DIRS = (Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu"))
MARK_READY, MARK_EXIT = "POWERCUT-READY", "POWERCUT-EXIT"

#: The guest's /init (busybox sh): modules, the two disks, the script named on the command line.
INIT = r"""#!/bin/busybox sh
export PATH=/bin HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 LC_ALL=C.UTF-8
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/powercut-modules); do insmod /lib/powercut/$m.ko 2>/dev/null; done
arg() { sed -n "s/.*pc\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
i=0; while [ ! -b /dev/vdb ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mkdir -p /mnt/install /mnt/tools
mount -t ext4 -o ro /dev/vdb /mnt/tools || echo "POWERCUT-ERROR tools disk"
mount -t "$(arg fstype)" -o "$(arg mountopts)" /dev/vda /mnt/install \
    || echo "POWERCUT-ERROR install disk"
echo "POWERCUT-READY $(cut -d' ' -f1 /proc/uptime)"
sh /mnt/tools/"$(arg script)"
echo "POWERCUT-EXIT $? $(cut -d' ' -f1 /proc/uptime)"
[ "$(arg finish)" = clean ] && { sync; umount /mnt/install; poweroff -f; }
poweroff -n -f
"""


def _installed(package: str, marker: str) -> bool:
    if marker:
        return Path(marker).exists()
    return bool(kernel_candidates())


def ensure_packages(optional: bool = True) -> list[str]:
    """Install (apt-get, non-interactive) the packages that are missing; return their names."""
    wanted = dict(PACKAGES, **(OPTIONAL_PACKAGES if optional else {}))
    missing = [name for name, marker in wanted.items() if not _installed(name, marker)]
    if missing:
        print(f"powercut: installing {' '.join(missing)} (apt-get)", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            # the package lists may be stale or empty (a fresh machine): refresh, try again
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return missing


def kernel_candidates() -> list[Path]:
    """The cloud kernels in /boot, newest last."""
    def version(path: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path.name)]
    return sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"), key=version)


def module_order(moddir: Path, wanted: Iterable[str]) -> list[Path]:
    """``wanted`` modules and their dependencies (modules.dep) in an order insmod can load them.

    Modules built into the kernel (modules.builtin) and unknown names are skipped.
    """
    deps: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        name = _modname(target)
        paths[name] = target
        deps[name] = [_modname(d) for d in rest.split()]
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in deps:
            return
        for dep in reversed(deps[name]):  # modules.dep lists the deepest dependency last
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"))
    return [moddir / paths[name] for name in order]


def _modname(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return data


class Cpio:
    """An initramfs archive (cpio "newc"), written without root: device nodes included."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        """Add ``name`` (no leading slash) with ``mode`` (type and permission bits)."""
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.parts += [header, encoded, b"\0" * (-(110 + len(encoded)) % 4), data,
                       b"\0" * (-len(data) % 4)]
        self.ino += 1

    def dir(self, name: str) -> None:
        self.add(name, 0o40755)

    def file(self, name: str, data: bytes, mode: int = 0o755) -> None:
        self.add(name, 0o100000 | mode, data)

    def link(self, name: str, target: str) -> None:
        self.add(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        """The archive, gzip-compressed (reproducible: no time stamp)."""
        self.add("TRAILER!!!", 0)
        return gzip.compress(b"".join(self.parts), compresslevel=6, mtime=0)


def program_libs(programs: Sequence[Path]) -> list[Path]:
    """The shared libraries ``programs`` load (``ldd``) plus :data:`SYSTEM_LIBS` and the loader."""
    found: set[Path] = {Path("/lib64/ld-linux-x86-64.so.2")}
    for program in programs:
        out = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
        found.update(Path(p) for p in re.findall(r"(/\S+) \(0x", out))
    for name in SYSTEM_LIBS:  # the first folder only: with merged /usr, /lib is /usr/lib
        found.update([d / name for d in LIB_DIRS if (d / name).exists()][:1])
    return sorted(found)


@dataclass(frozen=True)
class BootFiles:
    """A kernel and its initramfs, ready for ``qemu -kernel/-initrd``."""

    kernel: Path
    initrd: Path
    modules: tuple[str, ...]
    seconds: float  # time it took to build the initramfs (0 when it came from the cache)


def build_boot(programs: Sequence[Path] = ()) -> BootFiles:
    """The kernel and an initramfs that can run ``programs`` (cached by everything that goes in)."""
    kernel = kernel_candidates()[-1]
    release = kernel.name.removeprefix("vmlinuz-")
    mods = module_order(Path("/lib/modules") / release, MODULES)
    libs = program_libs(programs)
    busybox = Path("/bin/busybox")
    key = hashlib.sha256()
    for item in (kernel, busybox, *mods, *libs):
        stat = item.stat()
        key.update(f"{item}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    key.update(INIT.encode() + Path(__file__).read_bytes())
    out = CACHE / key.hexdigest()[:16]
    names = tuple(_modname(m.name) for m in mods)
    if (out / "initrd.cpio.gz").exists():
        out.touch()  # last used: builds unused for a week are removed
        return BootFiles(out / "vmlinuz", out / "initrd.cpio.gz", names, 0.0)
    start = time.monotonic()
    archive = Cpio()
    for folder in ("bin", "dev", "etc", "lib", "lib/powercut", "lib64", "mnt", "proc", "sys",
                   "tmp", "usr", "usr/lib"):
        archive.dir(folder)
    archive.add("dev/console", 0o20600, rdev=(5, 1))
    archive.file("bin/busybox", busybox.read_bytes())
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            archive.link(f"bin/{applet}", "busybox")
    archive.link("sbin", "bin")
    archive.file("init", INIT.encode())
    for mod, name in zip(mods, names, strict=True):
        archive.file(f"lib/powercut/{name}.ko", _module_bytes(mod), 0o644)
    archive.file("etc/powercut-modules", "\n".join(names).encode() + b"\n", 0o644)
    made: set[str] = set()
    for lib in libs:
        for folder in _parents(lib):
            if folder not in made and folder not in {"lib", "lib64", "usr", "usr/lib"}:
                archive.dir(folder)
                made.add(folder)
        archive.file(str(lib).lstrip("/"), lib.read_bytes())
    data = archive.finish()
    for old in CACHE.glob("[0-9a-f]" * 16):  # builds of earlier inputs, unused for a week
        if time.time() - old.stat().st_mtime > 7 * 86400:
            shutil.rmtree(old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    # two runs may build the same key at once: each writes its own part, the last one wins
    part = f".part-{os.getpid()}"
    shutil.copyfile(kernel, out / f"vmlinuz{part}")
    os.replace(out / f"vmlinuz{part}", out / "vmlinuz")
    (out / f"initrd.cpio.gz{part}").write_bytes(data)
    os.replace(out / f"initrd.cpio.gz{part}", out / "initrd.cpio.gz")
    return BootFiles(out / "vmlinuz", out / "initrd.cpio.gz", names, time.monotonic() - start)


def _parents(path: Path) -> list[str]:
    parts = str(path.parent).strip("/").split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def make_image(image: Path, source: Path, size_mb: int, label: str = "powercut",
               fs: str = "ext4") -> Path:
    """An image holding ``source``'s contents, nothing mounted on the host: ext4 by
    ``mke2fs -d``, btrfs by ``mkfs.btrfs --rootdir``."""
    image.unlink(missing_ok=True)
    if fs == "btrfs":
        with image.open("wb") as f:
            f.truncate(size_mb * 2**20)
        command = ["mkfs.btrfs", "-q", "-f", "-L", label, "--rootdir", str(source), str(image)]
    else:
        command = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label,
                   "-d", str(source), str(image), f"{size_mb}M"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return image


def fsck(image: Path, fs: str = "ext4") -> tuple[int, str]:
    """``e2fsck -fn`` or ``btrfs check --readonly``: its exit code (0: clean) and its output."""
    command = (["btrfs", "check", "--readonly", str(image)] if fs == "btrfs"
               else ["e2fsck", "-fn", str(image)])
    done = subprocess.run(command, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def extract(image: Path, dest: Path, fs: str = "ext4") -> Path:
    """Copy every file of ``image`` into ``dest`` without mounting it (``debugfs rdump``,
    ``btrfs restore``)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    command = (["btrfs", "restore", "-m", "-S", str(image), str(dest)] if fs == "btrfs"
               else ["debugfs", "-R", f"rdump / {dest}", str(image)])
    subprocess.run(command, check=True, capture_output=True)
    return dest


@dataclass
class Boot:
    """What one boot printed and how it ended.

    Attributes:
        lines: The serial console's lines (kernel messages are off: ``quiet``).
        times: For each line, the seconds from starting QEMU to its arrival.
        cut: Whether the power was cut (QEMU killed) rather than the guest powering off.
        exit_code: The guest script's exit code, None when it did not end.
        seconds: From starting QEMU to its end.
        ready: Seconds from starting QEMU to the guest's /init having mounted both disks.
    """

    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    cut: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    ready: float | None = None

    def after(self, marker: str) -> list[str]:
        """The lines that start with ``marker``, the marker taken off."""
        return [ln[len(marker):].strip() for ln in self.lines if ln.startswith(marker)]

    def first(self, text: str) -> float | None:
        """Seconds from starting QEMU to the first line containing ``text``."""
        return next((t for ln, t in zip(self.lines, self.times, strict=True) if text in ln), None)


def boot(files: BootFiles, install: Path, tools: Path, script: str, *, cut_on: str | None = None,
         cut_delay: float = 0.0, finish: str = "clean", timeout: float = 600.0,
         mountopts: str = "rw", fs: str = "ext4", memory_mb: int = 512,
         log: Path | None = None, echo: bool = False) -> Boot:
    """Boot the guest once and run ``tools``' file ``script`` against the ``install`` disk.

    Args:
        cut_on: Cut the power (SIGKILL QEMU) once a console line contains this text.
        cut_delay: Seconds between that line and the cut.
        finish: "clean": sync and unmount the install disk after the script; "none": power
            off without a sync (``poweroff -n -f``: what the guest has not written is lost).
        timeout: Seconds before QEMU is killed anyway (then ``exit_code`` stays None).
    """
    append = (f"console=ttyS0 quiet panic=-1 rdinit=/init pc.script={script} "
              f"pc.finish={finish} pc.mountopts={mountopts} pc.fstype={fs}")
    command = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mb), "-nodefaults",
               "-display", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
               "-kernel", str(files.kernel), "-initrd", str(files.initrd), "-append", append,
               "-drive", f"file={install},if=virtio,format=raw,cache=none",
               "-drive", f"file={tools},if=virtio,format=raw,readonly=on,cache=none"]
    result = Boot()
    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer, cut_at = b"", None
    try:
        while True:
            now = time.monotonic()
            if cut_at is not None and now >= cut_at or now - start > timeout:
                proc.kill()  # the power cut: no flush, no shutdown, in-flight writes gone
                result.cut = cut_at is not None and now >= cut_at
                break
            wait = min(x for x in (cut_at, start + timeout) if x is not None) - now
            if not selector.select(max(0.0, min(wait, 0.5))):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                result.lines.append(line)
                result.times.append(time.monotonic() - start)
                if echo:
                    print(f"  | {line}", file=sys.stderr, flush=True)
                if line.startswith(MARK_READY) and result.ready is None:
                    result.ready = time.monotonic() - start
                if line.startswith(MARK_EXIT):
                    result.exit_code = int(line.split()[1])
                if cut_on is not None and cut_at is None and cut_on in line:
                    cut_at = time.monotonic() + cut_delay
    finally:
        selector.close()
        proc.wait()
        proc.stdout.close()
        result.seconds = time.monotonic() - start
        if log is not None:
            log.write_text("\n".join(result.lines) + "\n")
    return result
