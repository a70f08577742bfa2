"""Malicious archives: crafted packages signed with the vendor's real keys (of a copy).

As if the vendor's build machine were compromised (:mod:`tests.faults.evil` signs whatever it
is given), build 1148 of a served copy of the repository is replaced, case by case, by a
package with traversal, absolute, drive-letter, UNC and backslash names, links, folder entries,
Windows device and stream names, trailing dots and spaces, names colliding by case or Unicode
form, paths into the customer-data folders or ``BUILD``, unsafe deleted paths, a bomb and a
header of 100,000 entries. Every case must be refused (22, or 13 for a package that does not
match its signed manifest, or 16 when that is found while applying and the backup was
restored) in bounded time, with the install still at build 1147 and not one byte changed
outside the updater's own folders.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults import Outcome, Suite, evil
from tests.faults.tampered import Served, run_case, served_copy
from updater.core.manifest import FileEntry
from updater.core.paths import EXCLUDED_DIRS, WORK_DIR

KLASS = "malicious archives"
UNSAFE = (22,)
#: A package that passes the header checks but not the signed manifest: refused before
#: anything is applied (13), or while applying, with the backup restored (16).
MISMATCH = (13, 16, 22)
BOMB_SIZE = 1 << 30
BOMB_DECLARED = 1 << 20


@dataclass(frozen=True)
class Case:
    """One crafted build 1148."""

    name: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    folders: Sequence[str] = ()
    deleted: Sequence[str] = ()
    codes: Sequence[int] = UNSAFE
    package: Path | None = None
    unpacked_size: int | None = None
    offline: bool = False


def _raw(name: str, real: str, legit: Mapping[str, bytes]) -> Case:
    """A package with the name ``real`` patched into the header (py7zr will not write it)."""
    placeholder = "Q" * len(real)
    # A NUL ends a name in a 7z header: the header no longer parses (13), or the name is cut.
    codes = (13, 22) if "\x00" in real else UNSAFE
    return Case(name, {**legit, placeholder: b"evil"}, rename={placeholder: real}, codes=codes)


def _named(name: str, names: Sequence[str], legit: Mapping[str, bytes]) -> Case:
    return Case(name, {**legit, **{n: b"evil" for n in names}})


def _cases(legit: Mapping[str, bytes]) -> list[Case]:
    raw = {
        "traversal ../x": "../x",
        "traversal a/../../x": "a/../../x",
        "traversal to the customer data": "../opusi/Database/SystemFiles/UserINI/x.ini",
        "absolute /etc/x": "/etc/x",
        "UNC //server/share/x": "//server/share/x",
        "NUL in a name": "opusi.exe\x00.txt",
    }
    cases = [_raw(n, real, legit) for n, real in raw.items()]
    named = {
        "backslash ..\\x": ["..\\x"],
        "backslash a\\..\\..\\x": ["a\\..\\..\\x"],
        "UNC \\\\server\\share\\x": ["\\\\server\\share\\x"],
        "drive letter C:/x": ["C:/x"],
        "drive letter C:x": ["C:x"],
        "drive letter C:\\x": ["C:\\x"],
        "device CON": ["CON"],
        "device aux.txt": ["Program/aux.txt"],
        "device LPT1": ["LPT1"],
        "device COM1.dll": ["Program/COM1.dll"],
        "stream name:stream": ["opusi.exe:evil"],
        "stream Zone.Identifier": ["Program/x.txt:Zone.Identifier:$DATA"],
        "trailing dot": ["opusi.exe."],
        "trailing space": ["Program/x.txt "],
        "control character": ["Program/a\x01b.txt"],
        "case collision": ["Program/A.txt", "program/a.txt"],
        "case collision with a legit file": ["OPUSI.EXE"],
        "Unicode NFC/NFD collision": ["Program/\u00c4.txt", "Program/A\u0308.txt"],
        "file and folder of the same name": ["Program/f", "Program/F/x"],
        "very long name": ["Program/" + "a" * 1100],
        "BUILD": ["BUILD"],
        "build (case)": ["build"],
    }
    cases += [_named(n, names, legit) for n, names in named.items()]
    cases += [_named(f"into {folder}/", [f"{folder}/x.ini"], legit) for folder in EXCLUDED_DIRS]
    cases += [
        _named("into help/ (case)", ["help/x.htm"], legit),
        _named(
            "into database/systemfiles/userini/ (case)", ["database/systemfiles/userini/x"], legit
        ),
        _named("the install's update.ini", ["Database/SystemFiles/SystemINI/update.ini"], legit),
        Case("symlink entry to /etc/passwd", legit, links={"Program/link": "/etc/passwd"}),
        Case("symlink entry to ../..", legit, links={"Program/up": "../../.."}),
        Case("symlink entry to a program file", legit, links={"Program/lnk": "../opusi.exe"}),
        Case("folder entry", legit, folders=["Program/evil"]),
        Case(
            "content other than the signed manifest's",
            {n: b"E" * len(data) for n, data in legit.items()},
            codes=MISMATCH,
        ),
        Case(
            "a file the signed manifest does not list", {**legit, "evil.dll": b"MZ"}, codes=MISMATCH
        ),
    ]
    deleted = {
        "deleted ../x": ["../x"],
        "deleted /etc/passwd": ["/etc/passwd"],
        "deleted C:/x": ["C:/x"],
        "deleted into UserINI": [f"{EXCLUDED_DIRS[-1]}/data-{len(EXCLUDED_DIRS) - 1}.bin"],
        "deleted into help/ (case)": ["help/data-0.bin"],
        "deleted the working folder": [WORK_DIR],
        "deleted BUILD": ["BUILD"],
    }
    cases += [Case(n, legit, deleted=d) for n, d in deleted.items()]
    return cases


def run(suite: Suite) -> list[Outcome]:
    """Every malicious package; see the module docstring."""
    work = suite.base / "archives"
    work.mkdir(parents=True, exist_ok=True)
    tree = suite.vendor.trees[1148]
    legit = {n: (tree / n).read_bytes() for n in ("opusi.exe", "Program/Module/neu ñ/日本語.txt")}
    cases = _cases(legit)
    if suite.quick:
        cases = cases[::3]
    outcomes: list[Outcome] = []
    with served_copy(suite, "archives-copy") as copy:
        manifest = evil.read_manifest(copy.repo, 1148)
        for i, case in enumerate(cases):
            offline = i % 4 == 3
            outcomes.append(_run(suite, copy, work / f"case-{i}", case, manifest, offline))
        outcomes += _bombs(suite, copy, work, manifest)
        outcomes += _many_entries(suite, copy, work, manifest)
    return outcomes


def _run(
    suite: Suite,
    copy: Served,
    folder: Path,
    case: Case,
    manifest: Mapping[str, FileEntry],
    offline: bool = False,
    limit: float = 60.0,
    check: Callable[[Path], str] | None = None,
    signed_manifest: Mapping[str, FileEntry] | None = None,
) -> Outcome:
    folder.mkdir(parents=True)
    pkg = case.package
    if pkg is None:
        pkg = evil.write_archive(
            folder / "evil.7z",
            case.files,
            rename=case.rename,
            links=case.links,
            folders=case.folders,
        )
    evil.sign_build(
        copy.repo,
        copy.keys,
        1148,
        1147,
        pkg,
        deleted=case.deleted,
        unpacked_size=case.unpacked_size,
        manifest=signed_manifest,
    )
    args = ("--offline", str(copy.repo)) if offline else ()
    label = case.name + (" (offline)" if offline else "")
    return run_case(suite, KLASS, label, folder / "opusi", copy.url, case.codes, args, limit, check)


def _largest_file(folder: Path, skip_suffix: str = ".7z") -> int:
    sizes = [
        (Path(d) / f).stat().st_size
        for d, _, files in os.walk(folder)
        for f in files
        if not f.endswith(skip_suffix) and not (Path(d) / f).is_symlink()
    ]
    return max(sizes, default=0)


def _bomb_check(limit: int, free_before: int) -> Callable[[Path], str]:
    def check(install: Path) -> str:
        largest = _largest_file(install / WORK_DIR)
        dropped = free_before - shutil.disk_usage(install).free
        if largest > limit:
            return f"a file of {largest} bytes in the working folder (limit {limit})"
        if dropped > 4 * limit + (256 << 20):
            return f"free disk space dropped by {dropped >> 20} MB"
        return ""

    return check


def _bombs(
    suite: Suite, copy: Served, work: Path, manifest: Mapping[str, FileEntry]
) -> list[Outcome]:
    """1 GiB of zeros in a ~150 KB package, signed as unpacking to 1 MiB."""
    folder = work / "bomb-src"
    folder.mkdir()
    zeros = folder / "zeros"
    with zeros.open("wb") as handle:
        handle.truncate(BOMB_SIZE)
    bomb = evil.write_archive_from_file(folder / "bomb.7z", zeros, "Program/bomb.bin", preset=1)
    zeros.unlink()
    outcomes = []
    free = shutil.disk_usage(work).free
    case = Case("bomb: 1 GiB in a 7z signed as 1 MiB", package=bomb, unpacked_size=BOMB_DECLARED)
    outcomes.append(
        _run(suite, copy, work / "bomb-1", case, manifest, check=_bomb_check(BOMB_DECLARED, free))
    )
    # The header lies too: it declares 256 MiB for the 1 GiB stream, and the compromised
    # machine signs that size and a manifest listing the file with it.
    liar = folder / "liar.7z"
    shutil.copyfile(bomb, liar)
    declared = 1 << 28
    evil.patch_header(liar, evil.encoded_number(BOMB_SIZE), evil.encoded_number(declared))
    signed = {**manifest, "Program/bomb.bin": FileEntry(declared, "0" * 64)}
    if not suite.quick:
        case = Case(
            "bomb: header declares 256 MiB of its 1 GiB, signed so",
            package=liar,
            unpacked_size=declared,
            codes=MISMATCH,
        )
        free = shutil.disk_usage(work).free
        outcomes.append(
            _run(
                suite,
                copy,
                work / "bomb-2",
                case,
                manifest,
                check=_bomb_check(declared, free),
                signed_manifest=signed,
            )
        )
    return outcomes


def _many_entries(
    suite: Suite, copy: Served, work: Path, manifest: Mapping[str, FileEntry]
) -> list[Outcome]:
    """A header of 100,000 one-byte files: as signed size, and within the build's real size."""
    folder = work / "many-src"
    folder.mkdir()
    started = time.monotonic()
    pkg = evil.many_entries(folder / "many.7z", 100_000)
    made = time.monotonic() - started
    legit_size = int(str(evil.build_info(suite.vendor.repo, 1148)["unpacked_size"]))
    cases = [
        Case("100,000 entries, signed with their size", package=pkg, codes=MISMATCH),
        Case(
            "100,000 entries, signed with the build's size", package=pkg, unpacked_size=legit_size
        ),
    ]
    outcomes = []
    for i, case in enumerate(cases[:1] if suite.quick else cases):
        outcome = _run(suite, copy, work / f"many-{i}", case, manifest, limit=60.0)
        outcomes.append(
            Outcome(
                outcome.klass,
                outcome.case,
                outcome.consistent,
                outcome.code_ok,
                outcome.detail + f" (package made in {made:.0f} s)",
            )
        )
    return outcomes
