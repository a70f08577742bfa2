"""Power cuts against a Linux guest under QEMU (see :mod:`tests.support.qemu`).

``--selftest`` shows that a cut loses what was not yet on the disk and only that: the guest
writes file A without fsync and file B with fsync, prints a marker, and the power goes right
after it (or a few seconds later); after the next boot A must be lost and B intact.

``--updater`` cuts the frozen updater's power while it applies an update (``--offline`` against
the test repository, builds 1147 to 1155), boots again, lets the updater recover, and requires
the install to be exactly build 1147 or 1155 and the customer data unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import qemu  # noqa: E402
from tests.support.powercut import (  # noqa: E402
    IMAGE_MB,
    MODES,
    TRIGGERS,
    updater_case,
    updater_setup,
)

MARK = "POWERCUT-MARK"

#: Guest script of the self-test: A without fsync, B with fsync, their hashes, the marker.
WRITE = """cd /mnt/install
dd if=/dev/urandom of=A.bin bs=64k count=16 2>/dev/null
dd if=/dev/urandom of=B.bin bs=64k count=16 conv=fsync 2>/dev/null
{sync}
echo "HASH A $(sha256sum A.bin | cut -d' ' -f1)"
echo "HASH B $(sha256sum B.bin | cut -d' ' -f1)"
echo POWERCUT-MARK
sleep 120
"""
#: Guest script of the boot after the cut: ext4 replays its journal on mounting; show the files.
CHECK = "ls -l /mnt/install\n"


def log(text: str) -> None:
    print(f"powercut: {text}", file=sys.stderr, flush=True)


@dataclass
class Tally:
    """One row of the self-test's table."""

    label: str
    tries: int = 0
    a_missing: int = 0
    a_empty: int = 0
    a_intact: int = 0
    b_intact: int = 0
    fsck_clean: int = 0
    cut: int = 0


def _hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def selftest_try(files: qemu.BootFiles, work: Path, tools: Path, script: str, delay: float,
                 tally: Tally, echo: bool, fs: str) -> float:
    """One try: fresh disk, write and cut, boot again, check on the host. Returns its seconds."""
    start = time.monotonic()
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    image = qemu.make_image(work / "install.raw", empty, IMAGE_MB[fs], fs=fs)
    first = qemu.boot(files, image, tools, script, cut_on=MARK, cut_delay=delay, finish="none",
                      timeout=300, echo=echo, log=work / "boot1.log", fs=fs)
    hashes = dict(line.split() for line in first.after("HASH"))
    second = qemu.boot(files, image, tools, "check.sh", timeout=300, echo=echo,
                       log=work / "boot2.log", fs=fs)
    code, _ = qemu.fsck(image, fs)
    tree = qemu.extract(image, work / "extract", fs)
    a, b = tree / "A.bin", tree / "B.bin"
    tally.tries += 1
    tally.cut += first.cut
    tally.a_missing += not a.is_file()
    tally.a_empty += a.is_file() and a.stat().st_size == 0
    tally.a_intact += _hash(a) == hashes.get("A")
    tally.b_intact += "B" in hashes and _hash(b) == hashes["B"]
    tally.fsck_clean += code == 0 and second.exit_code == 0
    return time.monotonic() - start


def selftest(tries: int, echo: bool, fs: str = "ext4") -> int:
    """Cut after the marker ``tries`` times, twice 7 s later, once after ``sync``; print a table."""
    files = qemu.build_boot()
    log(f"initramfs: {files.initrd} ({files.seconds:.1f} s to build; 0 = cached); "
        f"modules: {', '.join(files.modules)}")
    with tempfile.TemporaryDirectory(prefix="powercut-") as tmp:
        work = Path(tmp)
        src = work / "tools"
        src.mkdir()
        (src / "write.sh").write_text(WRITE.format(sync=""))
        (src / "write-sync.sh").write_text(WRITE.format(sync="sync"))
        (src / "check.sh").write_text(CHECK)
        tools = qemu.make_image(work / "tools.raw", src, 16, "tools")
        rows = [(Tally("cut right after the marker"), "write.sh", 0.0, tries),
                (Tally("cut 7 s after the marker"), "write.sh", 7.0, 2),
                (Tally("control: sync, then cut"), "write-sync.sh", 0.0, 1)]
        times: list[float] = []
        for tally, script, delay, count in rows:
            for i in range(count):
                times.append(selftest_try(files, work, tools, script, delay, tally, echo, fs))
                log(f"{tally.label} #{i + 1}: {times[-1]:.1f} s")
    print(f"file system: {fs}\n")
    print("| case | tries | power cut | A missing | A empty | A intact | B intact "
          "| fsck clean after reboot |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tally, *_ in rows:
        print(f"| {tally.label} | {tally.tries} | {tally.cut} | {tally.a_missing} "
              f"| {tally.a_empty} | {tally.a_intact} | {tally.b_intact} | {tally.fsck_clean} |")
    print(f"\none try (two boots, fsck, extract): {min(times):.1f}-{max(times):.1f} s")
    main, delayed, control = (r[0] for r in rows)
    ok = (main.cut == main.tries and main.a_missing + main.a_empty == main.tries
          and main.b_intact == main.tries
          and control.a_intact == control.tries and control.b_intact == control.tries
          and all(r[0].fsck_clean == r[0].tries for r in rows) and delayed.b_intact == 2)
    print("self-test:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


#: The full plan: (trigger, delays, recovery run) for each phase worth cutting in. The apply
#: phase of 1147 -> 1155 takes about 1.1 s in the guest, the backup and the downloads less.
FULL_PLAN: tuple[tuple[str, tuple[float, ...], str], ...] = (  # (trigger, delays, recovery)
    ("download", (0.0, 0.2, 0.4, 0.6, 0.8), "repo"),
    ("backup", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), "repo"),
    ("apply", tuple(round(0.1 * n, 1) for n in range(14)), "repo"),
    ("apply", tuple(round(0.1 * n + 0.05, 2) for n in range(12)), "norepo"),
    ("done", (0.0, 1.0, 3.0, 6.0, 10.0, 15.0), "norepo"),
)
#: Cuts inside a recovering run's restore: (delay into apply, delay into the restore).
#: (Into apply later than about 0.6 s, the update is done and there is nothing to restore.)
RECOVERY_PLAN = ((0.2, 0.15), (0.3, 0.0), (0.3, 0.1), (0.4, 0.05), (0.4, 0.2), (0.5, 0.0),
                 (0.5, 0.1), (0.5, 0.2))


def run_cases(plan: Sequence[tuple[str, Sequence[float], str]], echo: bool,
              mode: str = "linux", recovery_plan: Sequence[tuple[float, float]] = (),
              fs: str = "ext4") -> int:
    """One updater case per (trigger, delay, recovery); print a table; 0 when every case ended
    well (:attr:`tests.support.powercut.Case.ok`)."""
    with tempfile.TemporaryDirectory(prefix="powercut-updater-") as tmp:
        work = Path(tmp)
        files, tools, install, trees = updater_setup(work)
        cases = []
        for trigger, delays, recovery in plan:
            for delay in delays:
                cases.append(updater_case(files, work, tools, install, trees, trigger, delay,
                                          recovery, echo, mode, fs=fs))
                log(f"case {len(cases)}: {cases[-1]}")
        for delay, into_restore in recovery_plan:
            cases.append(updater_case(files, work, tools, install, trees, "apply", delay,
                                      "norepo", echo, mode, recovery_cut=into_restore,
                                      fs=fs))
            log(f"case {len(cases)}: {cases[-1]}")
        if not all(c.ok for c in cases):
            kept = Path(tempfile.mkdtemp(prefix="powercut-logs-"))
            for item in work.glob("*.log"):
                shutil.copy2(item, kept)
            log(f"guest consoles kept in {kept}")
    print("| fs | mode | cut | recovery run | power cut | rc before cut | BUILD after cut "
          "| recovery rc | final build | data identical | fsck clean | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: |")
    for c in cases:
        print(f"| {c.fs} | {c.mode} | {c.delay} s after {c.trigger} | {c.recovery} | {c.cut} "
              f"| {c.first_rc} | {c.after_cut} | {c.recovery_rc} "
              f"| {c.final} | {c.data_same} | {c.fsck_clean} | {c.seconds:.0f} |")
    cut = [c for c in cases if c.cut]
    print(f"\n{len(cases)} cases ({fs}, {mode}), {len(cut)} cut while running; final 1147: "
          f"{sum(c.final == '1147' for c in cases)}, 1155: "
          f"{sum(c.final == '1155' for c in cases)}, neither: "
          f"{sum(c.final == 'neither' for c in cases)}; data changed: "
          f"{sum(not c.data_same for c in cases)}; fsck unclean: "
          f"{sum(not c.fsck_clean for c in cases)}; "
          f"{sum(c.seconds for c in cases) / 60:.1f} min")
    ok = all(c.ok for c in cases)
    print("updater cases:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/powercut", description=__doc__)
    parser.add_argument("--selftest", action="store_true", help="A without, B with fsync")
    parser.add_argument("--updater", action="store_true", help="cut the frozen updater")
    parser.add_argument("--tries", type=int, default=5, help="self-test tries (default 5)")
    parser.add_argument("--cut-on", choices=sorted(TRIGGERS), default="apply",
                        help="updater: cut once the apply phase began, or once it ended")
    parser.add_argument("--delays", default="0,0.15,0.3,0.45,0.6,0.75,0.9,1.05,1.2",
                        help="updater: seconds after --cut-on's line to cut at")
    parser.add_argument("--recovery", choices=("repo", "norepo"), default="repo",
                        help="updater: the next run has the repository, or an empty folder")
    parser.add_argument("--plan", choices=("full", "recovery"), default=None,
                        help="updater: the full plan (cuts in every phase, and inside a "
                             "recovering run's restore), or only the latter, instead of --cut-on")
    parser.add_argument("--mode", choices=sorted(MODES), default="linux",
                        help="updater: Linux as it is, or Windows-like (no final sync())")
    parser.add_argument("--fs", choices=qemu.FILESYSTEMS, default="ext4",
                        help="the install disk's file system (default ext4)")
    parser.add_argument("--echo", action="store_true", help="show the guest's console")
    args = parser.parse_args(argv)
    if not (args.selftest or args.updater):
        parser.error("choose --selftest and/or --updater")
    installed = qemu.ensure_packages()
    log(f"installed from Debian: {', '.join(installed) or 'nothing (all present)'}")
    code = 0
    if args.selftest:
        code |= selftest(args.tries, args.echo, args.fs)
    if args.updater:
        delays = [float(d) for d in args.delays.split(",")]
        plan = {"full": FULL_PLAN, "recovery": ()}.get(
            args.plan or "", ((args.cut_on, delays, args.recovery),))
        code |= run_cases(plan, args.echo, args.mode, RECOVERY_PLAN if args.plan else (),
                          args.fs)
    return code


if __name__ == "__main__":
    sys.exit(main())
