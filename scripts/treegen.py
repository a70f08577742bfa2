"""Realistic program trees of successive builds, generated from a fixed seed.

Used by the demo (small) and the benchmark (about 600 MB). A tree has a few large binaries
with partly compressible content, and many small files (help pages, XML, DLL-like files) in
folders 4-5 deep. Each next build changes about ``change`` of the content, adds and deletes
some files; a large binary changes as rebuilt code does (:func:`_rebuilt`).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

WORDS = [
    "Patient",
    "Termin",
    "Abrechnung",
    "Befund",
    "Rezept",
    "Praxis",
    "Kasse",
    "Labor",
    "Bericht",
    "Leistung",
    "Ziffer",
    "Diagnose",
    "Quartal",
    "Formular",
    "Vorlage",
    "Brief",
    "Überweisung",
    "Größe",
    "Straße",
]
TOP = (
    "Program",
    "Program/Modules",
    "Program/Plugins",
    "Docs",
    "Templates",
    "Database/SystemFiles/Forms",
)


@dataclass(frozen=True)
class TreeSpec:
    """Shape of the generated install."""

    binaries: tuple[int, ...] = (6_000_000, 4_000_000, 2_500_000)
    small_files: int = 600
    small_min: int = 1_000
    small_max: int = 40_000
    change: float = 0.10


DEMO = TreeSpec()
BENCH = TreeSpec(
    binaries=(80_000_000, 60_000_000, 45_000_000, 30_000_000, 20_000_000),
    small_files=3_000,
    small_min=1_000,
    small_max=200_000,
)


def _content(rng: random.Random, size: int, compressible: float) -> bytes:
    """``size`` bytes: a share of text-like runs, the rest random (like machine code)."""
    text_part = int(size * compressible)
    words = " ".join(rng.choice(WORDS) for _ in range(text_part // 6 + 1)).encode("utf-8")[
        :text_part
    ]
    return words + rng.randbytes(size - len(words))


def _small_name(rng: random.Random, i: int) -> str:
    top = rng.choice(TOP)
    depth = rng.randint(2, 3)
    folders = "/".join(f"{rng.choice(WORDS)}{rng.randint(1, 9)}" for _ in range(depth))
    ext = rng.choice((".xml", ".htm", ".dll", ".dot", ".ini", ".xsl", ".png"))
    return f"{top}/{folders}/{rng.choice(WORDS).lower()}_{i:05}{ext}"


def _small_file(rng: random.Random, name: str, spec: TreeSpec) -> bytes:
    size = rng.randint(spec.small_min, spec.small_max)
    ratio = 0.2 if name.endswith((".dll", ".png")) else 0.9
    return _content(rng, size, ratio)


def baseline(rng: random.Random, spec: TreeSpec) -> dict[str, bytes]:
    """The first build's files."""
    files = {"opusi.exe": _content(rng, spec.binaries[0], 0.3)}
    for i, size in enumerate(spec.binaries[1:]):
        files[f"Program/opusi_core{i}.dll"] = _content(rng, size, 0.3)
    for i in range(spec.small_files):
        name = _small_name(rng, i)
        files[name] = _small_file(rng, name, spec)
    return files


#: Of a rebuilt binary, the share of its size that is new code (fresh bytes). Calibrated on
#: real releases (pyarrow's Windows DLLs, scripts/bench row 7): HDiffPatch's delta of a
#: rebuilt DLL is about 6% of the file (arrow.dll 25.0.1 -> 26.0.0: 1.1 MB of 18.7 MB).
NEW_CODE = 0.06


def _rebuilt(rng: random.Random, data: bytes, change: float) -> bytes:
    """A large binary as its next build: as rebuilt code changes, not as fresh noise.

    New code is inserted at one point (:data:`NEW_CODE` of the file, fresh bytes) and as much
    is removed at another, so all code after the insertion moves; within ``change`` of the
    file after it, the references into the moved code are fixed up (a 4-byte value every
    4-16 KiB). About ``change`` of the file's bytes then differ from the old file at the same
    position, while a delta finds most of them in the old file. (Before, a region of fresh
    random bytes overwrote ``change / 2`` of the whole tree: nothing any delta can shrink.)
    """
    size = len(data)
    fresh = int(size * NEW_CODE)
    at = rng.randrange(0, size // 2)
    gone = rng.randrange(at, size - fresh)
    out = bytearray(data[:at] + rng.randbytes(fresh) + data[at:gone] + data[gone + fresh:])
    pos, end = at + fresh, min(size, at + fresh + int(size * change))
    while pos < end - 4:
        out[pos:pos + 4] = rng.randbytes(4)
        pos += rng.randint(4096, 16384)
    return bytes(out)


def next_build(
    rng: random.Random, files: dict[str, bytes], spec: TreeSpec, number: int
) -> dict[str, bytes]:
    """The next build: change about ``spec.change`` of the bytes, add and delete some files."""
    result = dict(files)
    big = [n for n in result if len(result[n]) > 1_000_000]
    target = int(sum(len(v) for v in result.values()) * spec.change)
    changed = 0
    for name in rng.sample(big, k=max(1, len(big) // 3)):
        result[name] = _rebuilt(rng, result[name], spec.change)
        changed += len(result[name])
        if changed >= target // 2:
            break
    small = sorted(n for n in result if n not in big)
    for name in rng.sample(small, k=len(small) // 10):
        result[name] = _small_file(rng, name, spec)
    for name in rng.sample(small, k=len(small) // 50):
        del result[name]
    for i in range(len(small) // 40):
        name = _small_name(rng, number * 100_000 + i)
        result[name] = _small_file(rng, name, spec)
    return result


def generate(
    base: Path, builds: list[int], spec: TreeSpec = DEMO, seed: int = 1147
) -> dict[int, Path]:
    """Write one full tree per build under ``base/<build>/``; return the folders."""
    rng = random.Random(seed)
    files = baseline(rng, spec)
    trees = {}
    for i, number in enumerate(builds):
        if i:
            files = next_build(rng, files, spec, number)
        tree = base / str(number)
        if tree.exists():
            shutil.rmtree(tree)
        for name, data in files.items():
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        trees[number] = tree
    return trees
