"""The updater under power cuts: one case is a guest that runs the frozen updater and loses its
power at a chosen moment, a second boot in which the updater recovers, and a check on the host.

Used by ``scripts/powercut`` (the full suite, a table) and ``tests/powercut`` (a handful of cuts
in ``scripts/test``). The guest and the cut are :mod:`tests.support.qemu`'s; this module knows
the updater: the guest scripts, where to cut, and what counts as a good outcome (the install at
exactly build 1147 or 1155, the customer data unchanged, the file system's check clean, and a
run that reported success left 1155).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import qemu


def log(text: str) -> None:
    print(f"powercut: {text}", file=sys.stderr, flush=True)


#: Guest script of both boots of an updater case: the update (the second time: the recovery).
UPDATE = """export OPUSI_STATE_DIR=/tmp/state{extra}
echo "BUILD-BEFORE $(cat /mnt/install/opusi/BUILD 2>/dev/null || echo none)"
/mnt/tools/opusi-INSTALLUpdate --offline /mnt/tools/{repo} --install-dir /mnt/install/opusi \\
    --trusted-root /mnt/tools/root.json --yes --no-gui --progress json
echo "UPDATER-RC $?"
echo "BUILD-AFTER $(cat /mnt/install/opusi/BUILD 2>/dev/null || echo none)"
"""
#: The modes: Linux as it is (the final sync() before the journal goes), and Windows-like: no
#: such sync (the test hook OPUSI_SYNC_ALL=off), ext4 mounted noauto_da_alloc so that a rename
#: over a file no longer forces its data out (NTFS does not either).
MODES = {"linux": "", "windows-like": "\nexport OPUSI_SYNC_ALL=off"}
#: (btrfs has no such option: it starts writing a file out when it is renamed over another, and
#: keeps doing so in the Windows-like mode.)
MOUNT_OPTIONS = {("ext4", "linux"): "rw", ("ext4", "windows-like"): "rw,noauto_da_alloc",
                 ("btrfs", "linux"): "rw", ("btrfs", "windows-like"): "rw"}
#: Size of the install disk (btrfs keeps two copies of its metadata and wants more room).
IMAGE_MB = {"ext4": 128, "btrfs": 256}
#: Where the power goes: once the apply phase began (plus the delay), or once the updater ended.
TRIGGERS = {"download": '"phase": "download"', "backup": '"phase": "backup"',
            "apply": '"phase": "apply"', "done": "UPDATER-RC",
            "restore": "An earlier update was interrupted"}  # a recovering run's restore


@dataclass
class Case:
    """One updater case: its cut, the state the next boot found, the state after recovery."""

    trigger: str
    delay: float
    recovery: str
    mode: str = "linux"
    fs: str = "ext4"
    cut: bool = False
    after_cut: str = "?"
    first_rc: str = "-"
    recovery_rc: str = "?"
    final: str = "neither"
    data_same: bool = False
    fsck_clean: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Exactly build 1147 or 1155, the data unchanged, the file system clean, and a run
        that reported success (exit code 0 before the cut) left 1155."""
        return (self.final in ("1147", "1155") and self.data_same and self.fsck_clean
                and (self.first_rc != "0" or self.final == "1155"))


def updater_setup(work: Path) -> tuple[qemu.BootFiles, Path, Path, dict[int, Path]]:
    """The cached vendor and frozen updater, boot files, tools image, install source tree."""
    from tests.conftest import Vendor, make_install, make_vendor  # noqa: PLC0415
    from tests.support.frozen_build import build_frozen  # noqa: PLC0415

    base = qemu.CACHE / "vendor"
    if (base / ".done").exists():
        trees = {int(p.name[5:]): p for p in base.glob("tree-*")}
        vendor = Vendor(base / "repo", base / "keys", base / "licenses.sqlite3", trees)
    else:
        shutil.rmtree(base, ignore_errors=True)
        vendor = make_vendor(base)
        (base / ".done").touch()
    start = time.monotonic()
    exe, _ = build_frozen(vendor.root_file, qemu.CACHE / "dist")
    log(f"frozen updater {exe} ({time.monotonic() - start:.1f} s; reused when unchanged)")
    files = qemu.build_boot([exe])
    log(f"initramfs with glibc for it: {files.seconds:.1f} s to build (0 = cached)")
    install = make_install(work / "install" / "opusi", vendor.trees[1147], 1147,
                           "http://127.0.0.1:9")
    src = work / "tools"
    src.mkdir()
    shutil.copy2(exe, src / exe.name)
    shutil.copytree(vendor.repo, src / "repo")
    shutil.copy2(vendor.root_file, src / "root.json")
    (src / "norepo").mkdir()
    # the install, copied onto a file system the guest's kernel made (see install_image)
    shutil.copytree(install.parent, src / "install-src")
    (src / "fill.sh").write_text("cp -a /mnt/tools/install-src/. /mnt/install/ && echo FILLED\n")
    for mode, extra in MODES.items():
        # the cut boot stays up after the updater ended, so a cut can come seconds later
        # (the page cache still unwritten); the recovery boots power off when done
        (src / f"update-{mode}.sh").write_text(UPDATE.format(repo="repo", extra=extra)
                                                + "sleep 60\n")
        (src / f"recover-repo-{mode}.sh").write_text(UPDATE.format(repo="repo", extra=extra))
        (src / f"recover-norepo-{mode}.sh").write_text(UPDATE.format(repo="norepo",
                                                                     extra=extra))
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) // 2**20
    tools = qemu.make_image(work / "tools.raw", src, size * 2 + 32, "tools")
    return files, tools, install, vendor.trees


def install_image(files: qemu.BootFiles, work: Path, tools: Path, install: Path,
                  fs: str) -> Path:
    """A fresh install disk holding ``install``. ext4: made by ``mke2fs -d``. btrfs: an empty
    file system from ``mkfs.btrfs`` that the guest's kernel fills (``cp -a``) once per run,
    then copied for each case: ``mkfs.btrfs --rootdir`` images lost files that no program had
    touched after a power cut and log replay (4 of 51 cases), which images the kernel wrote
    never did; a customer's disk is written by the kernel too."""
    image = work / "install.raw"
    if fs == "ext4":
        return qemu.make_image(image, install.parent, IMAGE_MB[fs], fs=fs)
    template = work / f"install-{fs}.template"
    if not template.exists():
        empty = work / "empty"
        empty.mkdir(exist_ok=True)
        made = qemu.make_image(work / "template.part", empty, IMAGE_MB[fs], fs=fs)
        filled = qemu.boot(files, made, tools, "fill.sh", timeout=600, fs=fs)
        if "FILLED" not in filled.lines:
            raise RuntimeError(f"the guest could not fill the {fs} image: {filled.lines[-5:]}")
        made.rename(template)
    subprocess.run(["cp", "--sparse=always", str(template), str(image)], check=True)
    return image


def updater_case(files: qemu.BootFiles, work: Path, tools: Path, install: Path,
                 trees: dict[int, Path], trigger: str, delay: float, recovery: str,
                 echo: bool, mode: str = "linux", recovery_cut: float | None = None,
                 fs: str = "ext4") -> Case:
    """Cut ``delay`` s after ``trigger``, boot again (the updater recovers), check.

    ``recovery`` "repo": the next run has the repository and goes on to 1155; "norepo": it has
    an empty folder instead, so it can only restore (or keep) what the journal says.
    ``recovery_cut``: cut the recovering run too, that many seconds after its restore began
    (a cut inside a restore, inside a recovery run); a third boot then recovers.
    """
    from tests.conftest import data_snapshot, program_files, vendor_files  # noqa: PLC0415

    case, start = Case(trigger, delay, recovery, mode, fs), time.monotonic()
    image = install_image(files, work, tools, install, fs)
    name = f"{fs}-{mode}-{trigger}-{delay}-{recovery}"
    opts = MOUNT_OPTIONS[fs, mode]
    first = qemu.boot(files, image, tools, f"update-{mode}.sh", cut_on=TRIGGERS[trigger],
                      cut_delay=delay, finish="none", timeout=900, echo=echo,
                      log=work / f"cut-{name}.log", fs=fs, mountopts=opts)
    case.cut = first.cut
    apply, end = first.first(TRIGGERS["apply"]), first.first("UPDATER-RC")
    log(f"boot {first.ready or 0:.1f} s to /init ready; apply began at {apply or 0:.1f} s"
        + (f", updater ended at {end:.1f} s" if end else ""))
    case.first_rc = (first.after("UPDATER-RC") or ["-"])[0]
    script = f"recover-{recovery}-{mode}.sh"
    if recovery_cut is not None:
        case.trigger += f", then {recovery_cut} s into the recovery's restore"
        interrupted = qemu.boot(files, image, tools, script, cut_on=TRIGGERS["restore"],
                                cut_delay=recovery_cut, finish="none", timeout=900,
                                echo=echo, log=work / f"recover-cut-{name}.log",
                                fs=fs, mountopts=opts)
        case.cut = case.cut and interrupted.cut
    second = qemu.boot(files, image, tools, script, timeout=900, echo=echo,
                       log=work / f"recover-{name}.log", fs=fs, mountopts=opts)
    case.after_cut = (second.after("BUILD-BEFORE") or ["?"])[0]
    case.recovery_rc = (second.after("UPDATER-RC") or ["?"])[0]
    code, report = qemu.fsck(image, fs)
    case.fsck_clean = code == 0
    if not case.fsck_clean:
        log(f"file system check ({fs}): {report}")
    tree = qemu.extract(image, work / "extract", fs) / "opusi"
    have = program_files(tree)
    for build in (1147, 1155):
        if have == vendor_files(trees[build], build):
            case.final = str(build)
    case.data_same = data_snapshot(tree) == data_snapshot(install)
    case.seconds = time.monotonic() - start
    if case.final == "neither" or not case.data_same:
        _explain(have, {b: vendor_files(trees[b], b) for b in (1147, 1155)},
                 data_snapshot(tree), data_snapshot(install), work / f"diff-{name}.log")
    return case


def _explain(have: dict[str, str], builds: dict[int, dict[str, str]], data: dict[str, str],
             data_before: dict[str, str], out: Path) -> None:
    """Write down how a failed case's install differs from each build and its data from the
    original (kept with the guest consoles)."""
    lines = []
    for build, want in builds.items():
        lines.append(f"against build {build}:")
        for path in sorted(set(have) | set(want)):
            if have.get(path) != want.get(path):
                state = ("missing" if path not in have else "extra" if path not in want
                         else "different")
                lines.append(f"  {state}: {path}")
    lines.append("customer data:")
    for path in sorted(set(data) | set(data_before)):
        if data.get(path) != data_before.get(path):
            lines.append(f"  {'missing' if path not in data else 'changed'}: {path}")
    out.write_text("\n".join(lines) + "\n")
    log(f"what differs: {out}")
