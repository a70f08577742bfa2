"""The vendor's keys on a bad day (``opusi-repo keys``): root rotations, a second root key with
threshold 2, a leaked timestamp key replaced; an updater that carries root 1 still updates, and
metadata signed by a retired key is refused. Bad input and a killed command leave a repository
every client can use."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from tests.conftest import (
    Vendor,
    make_install,
    make_vendor,
    program_files,
    served,
    vendor_files,
)
from tests.integration.test_update import run
from tests.support.trees import program_builds, write_tree
from updater.publisher import keys, publish, repository
from updater.publisher.cli import main as repo_main
from updater.publisher.repository import load_signer


def _builds(*numbers: int) -> dict[int, dict[str, bytes]]:
    every = program_builds()
    return {n: every[n] for n in numbers}


def _metadata(repo: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((repo / "metadata").iterdir())}


def _keys(vendor: Vendor, command: str, *args: str | Path) -> int:
    return repo_main(["keys", command, "--repo", str(vendor.repo), *map(str, args)])


def _root_versions(repo: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in (repo / "metadata").glob("*.root.json"))


@pytest.fixture
def kvendor(tmp_path: Path) -> Vendor:
    return make_vendor(tmp_path / "vendor", _builds(1147, 1148))


def test_a_bad_day_and_an_updater_with_root_1(kvendor: Vendor, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Two root rotations, a second root key (threshold 2), the timestamp key replaced after a
    "leak", the snapshot and targets keys replaced; a build published after all of it. The
    frozen updater built with root 1 updates; a timestamp signed by the retired key: 12."""
    from tests.support.frozen_build import build_frozen

    vendor, stick = kvendor, tmp_path / "usb-stick-2"
    exe, _ = build_frozen(vendor.root_file, tmp_path / "dist")
    with served(vendor) as url:  # the server keeps serving through all of it
        _bad_day(vendor, stick, url, tmp_path, capsys, exe)


def _bad_day(vendor: Vendor, stick: Path, url: str, tmp_path: Path,
             capsys: pytest.CaptureFixture[str], exe: Path) -> None:
    before = make_install(tmp_path / "opusi-0", vendor.trees[1147], 1147, url)
    assert _keys(vendor, "rotate", "root", "--keys", vendor.keys) == 0
    assert run(before, vendor) == 0  # an update meanwhile, from root 1
    assert program_files(before) == vendor_files(vendor.trees[1148], 1148)
    assert _keys(vendor, "rotate", "root", "--keys", vendor.keys) == 0
    assert _keys(vendor, "add-root-key", "--keys", vendor.keys, "--new-folder", stick,
                 "--threshold", "2") == 0
    assert _keys(vendor, "rotate", "timestamp", "--keys", vendor.keys, "--keys", stick) == 0
    assert _keys(vendor, "rotate", "snapshot", "--keys", vendor.keys, "--keys", stick) == 0
    assert _keys(vendor, "rotate", "targets", "--keys", vendor.keys, "--keys", stick) == 0
    assert _keys(vendor, "resign", "timestamp", "--keys", vendor.keys, "--days", "30") == 0
    assert _keys(vendor, "resign", "root", "--keys", vendor.keys, "--keys", stick) == 0
    assert _root_versions(vendor.repo) == [1, 2, 3, 4, 5, 6, 7, 8]
    capsys.readouterr()
    assert _keys(vendor, "list", "--keys", vendor.keys, "--keys", stick, "--json") == 0
    listed = {r["role"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["root"]["threshold"] == 2 and len(listed["root"]["keyids"]) == 2
    assert len(listed["root"]["files"]) == 2 and listed["root"]["version"] == 8
    lifetime = datetime.fromisoformat(listed["timestamp"]["expires"]) - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)  # resign --days 30
    retired = sorted(p.name for p in vendor.keys.glob("*.retired-*.pem"))
    assert [n.split(".")[0] for n in retired] == ["root", "root", "snapshot", "targets",
                                                  "timestamp"]
    tree = write_tree(tmp_path / "tree-1150", program_builds()[1150])
    publish.publish_build(vendor.repo, vendor.keys, 1150, tree)  # the online keys as before

    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, url)
    done = subprocess.run([str(exe), "--install-dir", str(install), "--yes", "--no-gui",
                           "--progress", "none"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert program_files(install) == vendor_files(tree, 1150)

    # the leaked key signs a newer timestamp.json: clients on the new root refuse it
    leaked = load_signer(next(vendor.keys.glob("timestamp.retired-*.pem")))
    stamp = Metadata.from_file(str(vendor.repo / "metadata" / "timestamp.json"))
    stamp.signed.version += 1
    stamp.signatures.clear()
    stamp.sign(leaked)
    stamp.to_file(str(vendor.repo / "metadata" / "timestamp.json"))
    fresh = make_install(tmp_path / "opusi-2", vendor.trees[1147], 1147, url)
    done = subprocess.run([str(exe), "--install-dir", str(fresh), "--yes", "--no-gui",
                           "--progress", "none"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 12, done.stderr
    assert program_files(fresh) == vendor_files(vendor.trees[1147], 1147)


def test_bad_input_changes_nothing(kvendor: Vendor, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    vendor = kvendor
    other = make_vendor(tmp_path / "other", _builds(1147))
    stick = tmp_path / "stick"
    before = _metadata(vendor.repo)
    cases: list[tuple[list[str | Path], str]] = [
        (["rotate", "timestamp", "--keys", tmp_path / "missing"], "does not exist"),
        (["rotate", "timestamp", "--keys", other.keys], "not a timestamp key of this repository"),
        (["rotate", "targets", "--keys", tmp_path], "holds no targets key"),
        (["add-root-key", "--keys", vendor.keys, "--new-folder", stick, "--threshold", "3"],
         "threshold of 3 cannot be met by 2"),
        (["add-root-key", "--keys", vendor.keys, "--new-folder", vendor.keys, "--threshold",
          "1"], "already holds a root key"),
        (["resign", "root", "--keys", other.keys], "signed by 1 of the current root keys; 0"),
        (["rotate", "root"], "Give the key folder"),
    ]
    for args, message in cases:
        assert _keys(vendor, str(args[0]), *args[1:]) == 31, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert _metadata(vendor.repo) == before, args
    # with threshold 2, one root key alone can no longer sign a root
    assert _keys(vendor, "add-root-key", "--keys", vendor.keys, "--new-folder", stick,
                 "--threshold", "2") == 0
    before = _metadata(vendor.repo)
    assert _keys(vendor, "rotate", "root", "--keys", vendor.keys) == 31
    assert "signed by 2 of the current root keys; 1 found" in capsys.readouterr().err
    assert _metadata(vendor.repo) == before
    assert not (vendor.keys / "root.next.pem").exists()  # refused before a key was made
    assert _keys(vendor, "rotate", "root", "--keys", vendor.keys, "--keys", stick) == 0


def test_a_rotation_killed_after_its_switch_is_finished_by_the_next(
        kvendor: Vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed right after the new root was written (before the key files were renamed): the
    repository serves clients, and running the command again finishes it with the same key."""
    vendor = kvendor

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(keys, "_retire", killed)
    with pytest.raises(KeyboardInterrupt):
        keys.rotate(vendor.repo, "timestamp", [vendor.keys])
    monkeypatch.undo()
    pending = load_signer(vendor.keys / "timestamp.next.pem").public_key.keyid
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, "http://127.0.0.1:9")
    assert run(install, vendor, "--offline", str(vendor.repo)) == 0
    assert keys.rotate(vendor.repo, "timestamp", [vendor.keys]) == pending
    assert load_signer(vendor.keys / "timestamp.pem").public_key.keyid == pending
    assert not (vendor.keys / "timestamp.next.pem").exists()
    assert repository.refresh_timestamp(vendor.repo, load_signer(vendor.keys / "timestamp.pem"),
                                        min_remaining=timedelta(days=30))


def test_rotations_killed_at_any_moment_leave_a_usable_repository(
        kvendor: Vendor, tmp_path: Path) -> None:
    """SIGKILL real ``keys rotate`` commands at several moments: every time, an updater with
    root 1 still updates from the repository, and the command run again completes."""
    vendor = kvendor
    landed = set()
    for n, delay in enumerate((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45)):  # it takes 0.36 s
        role = ("timestamp", "snapshot", "targets", "root")[n % 4]
        before = _root_versions(vendor.repo)[-1]
        proc = subprocess.Popen([sys.executable, "-m", "updater.publisher.cli", "keys", "rotate",
                                 role, "--repo", str(vendor.repo), "--keys", str(vendor.keys)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed.add(_root_versions(vendor.repo)[-1] == before)
        install = make_install(tmp_path / f"opusi-{n}", vendor.trees[1147], 1147,
                               "http://127.0.0.1:9")
        assert run(install, vendor, "--offline", str(vendor.repo)) == 0, (role, delay)
        assert program_files(install) == vendor_files(vendor.trees[1148], 1148)
        keys.rotate(vendor.repo, role, [vendor.keys])  # finishes or does it anew
        assert not list(vendor.keys.glob("*.next.pem"))
    assert True in landed, "no kill landed before a rotation was complete"
