"""The vendor's repository: init, publish (and every refusal), publish-updater, timestamp."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from tests.support.trees import program_builds, snapshot, write_tree
from updater.core import manifest as mf
from updater.core.errors import PublishRefusedError, RepositoryError
from updater.publisher import publish, repository
from updater.publisher.cli import main as repo_main
from updater.publisher.trees import scan_tree
from updater.shared import package


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    repo_dir, keys = tmp_path / "repo", tmp_path / "keys"
    repository.init_repository(repo_dir, keys)
    return repo_dir, keys


def _publish_all(repo_dir: Path, keys: Path, tmp_path: Path, upto: int = 99999) -> dict[int, Path]:
    trees = {}
    for build, files in program_builds().items():
        if build > upto:
            break
        trees[build] = write_tree(tmp_path / f"tree-{build}", files)
        publish.publish_build(repo_dir, keys, build, trees[build])
    return trees


def test_init_keeps_private_keys_out_of_the_repository(repo: tuple[Path, Path]) -> None:
    repo_dir, keys = repo
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for role in repository.ROLES:
        assert stat.S_IMODE((keys / f"{role}.pem").stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (keys / f"{role}.pem").read_bytes()
    for path in repo_dir.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    root = Metadata.from_file(str(repo_dir / "metadata" / "1.root.json"))
    root.verify_delegate("root", root)
    assert root.signed.consistent_snapshot
    state = repository.load_state(repo_dir)
    for role in ("targets", "snapshot", "timestamp"):
        root.verify_delegate(role, getattr(state, role))


def test_init_refuses_to_overwrite(repo: tuple[Path, Path], tmp_path: Path) -> None:
    repo_dir, keys = repo
    before = snapshot(tmp_path)
    with pytest.raises(RepositoryError):
        repository.init_repository(repo_dir, tmp_path / "other-keys")
    with pytest.raises(RepositoryError):
        repository.init_repository(tmp_path / "other-repo", keys)
    assert snapshot(tmp_path) == before


def test_three_builds_replay_to_the_vendor_trees(repo: tuple[Path, Path], tmp_path: Path) -> None:
    """Extracting each package and deleting its deleted paths reproduces every build's tree."""
    repo_dir, keys = repo
    trees = _publish_all(repo_dir, keys, tmp_path)
    state = repository.load_state(repo_dir)
    builds = state.builds()
    assert list(builds) == [1147, 1148, 1150, 1152, 1155]
    install = tmp_path / "install"
    install.mkdir()
    previous = None
    for build, target in builds.items():
        info = target.custom["opusi"]
        assert info["build"] == build and info["previous"] == previous
        pkg = repo_dir / "targets" / "builds" / f"{target.hashes['sha256']}.{build}.7z"
        target.verify_length_and_hashes(pkg.read_bytes())
        staging = tmp_path / f"staging-{build}"
        staging.mkdir()
        package.extract_to(pkg, staging, info["unpacked_size"])
        assert sum(m.size for m in package.list_members(pkg)) == info["unpacked_size"]
        for rel in scan_tree(staging).files:
            (install / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, install / rel)
        for rel in info["deleted"]:
            (install / rel).unlink()
        assert _files(install) == _files(trees[build]), build
        previous = build
    assert builds[1148].custom["opusi"]["deleted"] == ["old/obsolete.dll"]
    assert builds[1150].custom["opusi"]["deleted"] == ["README.txt"]
    # the 1150 package carries only what changed: the new empty file and the changed one
    pkg1150 = repo_dir / "targets" / "builds" / f"{builds[1150].hashes['sha256']}.1150.7z"
    names = sorted(m.name for m in package.list_members(pkg1150))
    assert names == ["Program/Module/deep/er/still/file.txt", "Program/empty2.cfg"]


def test_manifest_target_holds_the_full_tree(repo: tuple[Path, Path], tmp_path: Path) -> None:
    repo_dir, keys = repo
    trees = _publish_all(repo_dir, keys, tmp_path, upto=1148)
    state = repository.load_state(repo_dir)
    target = state.target("manifests/1148.json")
    data = (
        repo_dir / "targets" / "manifests" / f"{target.hashes['sha256']}.1148.json"
    ).read_bytes()
    target.verify_length_and_hashes(data)
    manifest = mf.manifest_from_json(data)
    assert {p: e.sha256 for p, e in manifest.items()} == _files(trees[1148])


def _files(root: Path) -> dict[str, str]:
    return {p: h for p, h in snapshot(root).items() if not p.endswith("/")}


# --- refusals: each leaves the repository exactly as it was -------------------------------


def _refused(repo_dir: Path, keys: Path, build: int, tree: Path, match: str, **kw: Any) -> None:
    before = snapshot(repo_dir)
    with pytest.raises(PublishRefusedError, match=match):
        publish.publish_build(repo_dir, keys, build, tree, **kw)
    assert snapshot(repo_dir) == before


@pytest.fixture
def published(repo: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    repo_dir, keys = repo
    trees = _publish_all(repo_dir, keys, tmp_path, upto=1148)
    return repo_dir, keys, trees[1148]


def test_refuses_build_number_not_greater(
    published: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo_dir, keys, tree = published
    changed = write_tree(tmp_path / "t", {**program_builds()[1150]})
    _refused(repo_dir, keys, 1148, changed, "not newer")
    _refused(repo_dir, keys, 1000, changed, "not newer")


def test_refuses_excluded_folders_unless_told(
    published: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo_dir, keys, _ = published
    files = {
        **program_builds()[1150],
        "database/systemfiles/USERINI/user.ini": b"x",
        "Help/a.htm": b"h",
    }
    tree = write_tree(tmp_path / "t", files)
    _refused(repo_dir, keys, 1150, tree, "customer data")
    result = publish.publish_build(repo_dir, keys, 1150, tree, ignore_excluded=True)
    assert sorted(result.left_out) == ["Help/a.htm", "database/systemfiles/USERINI/user.ini"]
    manifest_names = set(scan_tree(tree).files) - set(result.left_out)
    assert set(result.diff.written) <= manifest_names


@pytest.mark.parametrize(
    "name,reason",
    [
        ("Program/CON.txt", "device name"),
        ("Program/aux", "device name"),
        ("Program/file.", "trailing dot"),
        ("Program/file ", "trailing dot or space"),
        ("Program/a:b.txt", "':'"),
        ("Program/back\\slash.txt", "backslash"),
        ("Program/what?.txt", "character"),
    ],
)
def test_refuses_names_windows_cannot_hold(
    published: tuple[Path, Path, Path], tmp_path: Path, name: str, reason: str
) -> None:
    repo_dir, keys, _ = published
    tree = write_tree(tmp_path / "t", {**program_builds()[1150], name: b"x"})
    _refused(repo_dir, keys, 1150, tree, reason)


def test_refuses_names_differing_only_by_case(
    published: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo_dir, keys, _ = published
    tree = write_tree(
        tmp_path / "t", {**program_builds()[1150], "Program/X.txt": b"1", "program/x.TXT": b"2"}
    )
    _refused(repo_dir, keys, 1150, tree, "only by case")


def test_refuses_symlinks(published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo_dir, keys, _ = published
    tree = write_tree(tmp_path / "t", program_builds()[1150])
    (tree / "link.dll").symlink_to(tree / "opusi.dll")
    _refused(repo_dir, keys, 1150, tree, "symbolic links")
    (tree / "link.dll").unlink()
    (tree / "outside").symlink_to(tmp_path, target_is_directory=True)
    _refused(repo_dir, keys, 1150, tree, "symbolic links")


def test_refuses_empty_builds(published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo_dir, keys, tree = published
    _refused(repo_dir, keys, 1150, tree, "identical")
    empty = tmp_path / "empty"
    (empty / "Program").mkdir(parents=True)
    _refused(repo_dir, keys, 1150, empty, "no files")
    _refused(repo_dir, keys, 1150, tmp_path / "missing", "not a folder")


def test_refuses_keys_of_another_repository(
    published: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo_dir, _, _ = published
    repository.init_repository(tmp_path / "other", tmp_path / "other-keys")
    tree = write_tree(tmp_path / "t", program_builds()[1150])
    before = snapshot(repo_dir)
    with pytest.raises(RepositoryError, match="is not the"):
        publish.publish_build(repo_dir, tmp_path / "other-keys", 1150, tree)
    assert snapshot(repo_dir) == before


def test_cli_refusal_exit_code_and_message(
    published: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo_dir, keys, tree = published
    code = repo_main(
        [
            "publish",
            "--repo",
            str(repo_dir),
            "--keys",
            str(keys),
            "--build",
            "1148",
            "--tree",
            str(tree),
        ]
    )
    assert code == 30
    err = capsys.readouterr().err
    assert "Error 30" in err and "not newer" in err
    assert repo_main(["publish", "--repo", str(repo_dir)]) == 10


def test_killed_publish_leaves_what_clients_see_unchanged(
    published: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """SIGKILL a real publish at several moments: clients see the old state or the new one."""
    repo_dir, keys, _ = published
    big = {
        **program_builds()[1150],
        **{f"Program/many/{i:04}.bin": os.urandom(3000) for i in range(400)},
    }
    tree = write_tree(tmp_path / "big", big)
    old_version = repository.load_state(repo_dir).timestamp.signed.version
    outcomes = set()
    for delay in (0.3, 0.6, 0.9, 1.2, 1.6, 2.0):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "updater.publisher.cli",
                "publish",
                "--repo",
                str(repo_dir),
                "--keys",
                str(keys),
                "--build",
                "1150",
                "--tree",
                str(tree),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = repository.load_state(repo_dir)  # must always load
        builds = state.builds()
        outcomes.add(max(builds))
        if max(builds) == 1150:
            break
        assert state.timestamp.signed.version == old_version
    assert 1148 in outcomes, "no kill landed before the publish completed"
    if 1150 not in repository.load_state(repo_dir).builds():
        publish.publish_build(repo_dir, keys, 1150, tree)
    else:
        # killed after the switch, before it removed its staging folder (with delta packages
        # that takes longer): the next command removes it first, also one that is refused
        with pytest.raises(PublishRefusedError):
            publish.publish_build(repo_dir, keys, 1150, tree)
    assert max(repository.load_state(repo_dir).builds()) == 1150
    assert not (repo_dir / repository.STAGING_DIR).exists()


# --- updater targets and timestamp ---------------------------------------------------------


def test_publish_updater_replaces_the_older_one(repo: tuple[Path, Path], tmp_path: Path) -> None:
    repo_dir, keys = repo
    exe = tmp_path / "opusi-INSTALLUpdate.exe"
    exe.write_bytes(b"MZ first")
    publish.publish_updater(repo_dir, keys, exe, "windows-x86_64", "0.1")
    exe.write_bytes(b"MZ second")
    target = publish.publish_updater(repo_dir, keys, exe, "windows-x86_64", "0.2")
    linux = tmp_path / "opusi-INSTALLUpdate"
    linux.write_bytes(b"\x7fELF")
    publish.publish_updater(repo_dir, keys, linux, "linux-x86_64")
    names = sorted(repository.load_state(repo_dir).targets.signed.targets)
    assert names == [
        "updater/linux-x86_64/opusi-INSTALLUpdate",
        "updater/windows-x86_64/opusi-INSTALLUpdate.exe",
    ]
    assert target.custom["opusi"]["version"] == "0.2"
    with pytest.raises(PublishRefusedError):
        publish.publish_updater(repo_dir, keys, exe, "Windows x64")


def test_refresh_timestamp_before_expiry(tmp_path: Path) -> None:
    repo_dir, keys = tmp_path / "repo", tmp_path / "keys"
    repository.init_repository(repo_dir, keys, {"timestamp": 1})
    signer = repository.load_signer(keys / "timestamp.pem")
    before = repository.load_state(repo_dir).timestamp.signed
    assert not repository.refresh_timestamp(repo_dir, signer, min_remaining=timedelta(hours=12))
    assert repository.refresh_timestamp(repo_dir, signer, min_remaining=timedelta(days=2))
    after = repository.load_state(repo_dir).timestamp.signed
    assert after.version == before.version + 1
    assert after.snapshot_meta.version == before.snapshot_meta.version
    with pytest.raises(RepositoryError):
        repository.refresh_timestamp(
            repo_dir, repository.load_signer(keys / "targets.pem"), min_remaining=timedelta(days=2)
        )


def test_refuses_the_build_file(published: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo_dir, keys, _ = published
    tree = write_tree(tmp_path / "t", {**program_builds()[1150], "build": b"1150"})
    _refused(repo_dir, keys, 1150, tree, "only the updater writes")


@pytest.mark.parametrize("method", sorted(package.METHODS))
def test_each_method_replays(method: str, repo: tuple[Path, Path], tmp_path: Path) -> None:
    repo_dir, keys = repo
    tree = write_tree(tmp_path / "tree", program_builds()[1147])
    result = publish.publish_build(repo_dir, keys, 1147, tree, method=method)
    out = tmp_path / "out"
    out.mkdir()
    package.extract_to(result.package, out, result.unpacked_size)
    assert _files(out) == _files(tree)
    if method == "lzma2" and shutil.which("7zz"):  # stock 7-Zip opens LZMA2 packages
        listing = subprocess.run(["7zz", "t", str(result.package)], capture_output=True, text=True)
        assert listing.returncode == 0, listing.stdout


def test_unknown_method_is_refused(repo: tuple[Path, Path], tmp_path: Path) -> None:
    repo_dir, keys = repo
    tree = write_tree(tmp_path / "tree", program_builds()[1147])
    _refused(repo_dir, keys, 1147, tree, "Unknown method", method="brotli")
