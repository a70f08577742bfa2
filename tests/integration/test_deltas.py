"""Delta packages end to end: published beside the full ones, chosen by the updater, rebuilt
from the installed files, and the full package whenever a delta cannot be used."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    Vendor,
    data_snapshot,
    make_install,
    make_vendor,
    program_files,
    run_logs,
    served,
    vendor_files,
)
from tests.integration.test_update import run
from updater.core.builds import DELTA_DIR, WHOLE_DIR
from updater.publisher import deltas as publisher_deltas
from updater.publisher import repository
from updater.shared import delta, package


def _patched(data: bytes, rng: random.Random, edits: int) -> bytes:
    """``data`` with a few regions replaced and a few bytes inserted, as a rebuilt library."""
    out = bytearray(data)
    for _ in range(edits):
        at = rng.randrange(len(out) - 2000)
        out[at:at + 500] = rng.randbytes(500)
        out[at + 1000:at + 1000] = rng.randbytes(64)
    return bytes(out)


def delta_builds() -> dict[int, dict[str, bytes]]:
    """Three builds: a large library changing a little, a large file replaced entirely (its
    delta is useless, so it goes whole), a large file added, small files."""
    rng = random.Random(1147)
    b1 = {"opusi.exe": b"MZ" + rng.randbytes(90_000), "lib/big.dll": rng.randbytes(400_000),
          "lib/noise.bin": rng.randbytes(150_000), "README.txt": b"readme 1"}
    b2 = dict(b1, **{"lib/big.dll": _patched(b1["lib/big.dll"], rng, 4),
                     "opusi.exe": _patched(b1["opusi.exe"], rng, 1),
                     "lib/noise.bin": rng.randbytes(150_000), "lib/new.dll": rng.randbytes(100_000),
                     "README.txt": b"readme 2"})
    b3 = dict(b2, **{"lib/big.dll": _patched(b2["lib/big.dll"], rng, 3), "README.txt": b"r3"})
    return {1: b1, 2: b2, 3: b3}


@pytest.fixture(scope="module")
def dvendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    return make_vendor(tmp_path_factory.mktemp("deltas"), delta_builds())


@pytest.fixture(scope="module")
def durl(dvendor: Vendor) -> Iterator[str]:
    with served(dvendor) as url:
        yield url


def _targets(vendor: Vendor) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in repository.summarize(vendor.repo)}


def test_published_beside_the_full_packages(dvendor: Vendor) -> None:
    targets = _targets(dvendor)
    assert "deltas/1.7z" not in targets  # the first build has nothing to be a delta of
    length = {name: int(str(row["length"])) for name, row in targets.items()}
    for build in (2, 3):
        delta = targets[f"deltas/{build}.7z"]
        assert delta["kind"] == "delta" and delta["previous"] == build - 1
    # build 2: 250,000 bytes of random data go whole; the two deltas add little to them
    assert length["deltas/2.7z"] < 250_000 + 10_000 < length["builds/2.7z"] - 400_000
    assert length["deltas/3.7z"] < 0.05 * length["builds/3.7z"]
    files = targets["deltas/2.7z"]["files"]
    assert isinstance(files, dict)
    assert sorted(files) == ["lib/big.dll", "opusi.exe"]  # noise.bin and new.dll go whole
    pkg = next(p for p in (dvendor.repo / "targets" / "deltas").iterdir() if ".2.7z" in p.name)
    names = sorted(m.name for m in package.list_members(pkg))
    assert names == sorted([f"{DELTA_DIR}lib/big.dll", f"{DELTA_DIR}opusi.exe",
                            f"{WHOLE_DIR}lib/noise.bin", f"{WHOLE_DIR}lib/new.dll",
                            f"{WHOLE_DIR}README.txt"])


def test_update_with_deltas(tmp_path: Path, dvendor: Vendor, durl: str) -> None:
    install = make_install(tmp_path / "opusi", dvendor.trees[1], 1, durl)
    data = data_snapshot(install)
    assert run(install, dvendor) == 0
    assert program_files(install) == vendor_files(dvendor.trees[3], 3)
    assert data_snapshot(install) == data
    logs = run_logs(install)
    assert "build 2: delta package" in logs and "build 3: delta package" in logs
    assert "cannot be used" not in logs


def test_a_locally_changed_file_falls_back_to_the_full_package(
        tmp_path: Path, dvendor: Vendor, durl: str) -> None:
    install = make_install(tmp_path / "opusi", dvendor.trees[1], 1, durl)
    (install / "lib" / "big.dll").write_bytes(b"changed by hand" * 1000)
    data = data_snapshot(install)
    assert run(install, dvendor) == 0
    assert program_files(install) == vendor_files(dvendor.trees[3], 3)
    assert data_snapshot(install) == data
    logs = run_logs(install)
    assert "build 2: the delta package cannot be used (lib/big.dll in the install is not the " \
           "file the delta applies to" in logs
    assert "cannot be used" not in logs.split("build 2: the delta package cannot be used")[1]


def test_a_wrong_delta_signed_by_the_vendor_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delta that gives a wrong file (Velopack #751) though every signature and hash of the
    package is right: the rebuilt file fails the manifest, the full package is used."""
    real = publisher_deltas._delta_of

    def wrong(base: Path | None, source: Path, entry: object) -> bytes | None:
        if base is None or source.name != "big.dll":
            return real(base, source, entry)  # type: ignore[arg-type]
        broken = bytearray(source.read_bytes())
        broken[1000] ^= 0xFF
        return delta.make(base.read_bytes(), bytes(broken))

    monkeypatch.setattr(publisher_deltas, "_delta_of", wrong)
    vendor = make_vendor(tmp_path / "vendor", delta_builds())
    monkeypatch.undo()
    with served(vendor, threads=2) as url:
        install = make_install(tmp_path / "opusi", vendor.trees[1], 1, url)
        assert run(install, vendor) == 0
    assert program_files(install) == vendor_files(vendor.trees[3], 3)
    logs = run_logs(install)
    assert ("lib/big.dll rebuilt from its delta does not match the signed manifest" in logs
            or "lib/big.dll: the delta" in logs)


def test_a_damaged_delta_package_falls_back(tmp_path: Path, dvendor: Vendor, durl: str) -> None:
    """The delta package on the server damaged (its signed hash no longer matches): refused,
    the full package fetched instead, the same result."""
    pkg = next(p for p in (dvendor.repo / "targets" / "deltas").iterdir() if ".3.7z" in p.name)
    original = pkg.read_bytes()
    pkg.write_bytes(original[:-100] + bytes(100))
    try:
        install = make_install(tmp_path / "opusi", dvendor.trees[1], 1, durl)
        assert run(install, dvendor) == 0
    finally:
        pkg.write_bytes(original)
    assert program_files(install) == vendor_files(dvendor.trees[3], 3)
    assert "build 3: the delta package cannot be used" in run_logs(install)


def test_check_reports_the_bytes_to_fetch(tmp_path: Path, dvendor: Vendor, durl: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    install = make_install(tmp_path / "opusi", dvendor.trees[1], 1, durl)
    assert run(install, dvendor, "--check", "--progress", "json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    targets = _targets(dvendor)
    expected = sum(int(str(targets[n]["length"])) for n in ("deltas/2.7z", "deltas/3.7z"))
    assert report["download_bytes"] == expected
