"""Unit tests of updater.core.builds: the signed record schema and describe_targets."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from updater.core.builds import (
    CUSTOM_KEY,
    BuildInfo,
    DeltaFile,
    DeltaInfo,
    ManifestInfo,
    RemoteFile,
    RemoteUpdater,
    RepositoryView,
    SchemaError,
    SignedTarget,
    UpdaterInfo,
    describe_targets,
    hashed_path,
    kind_of,
)

BASE = "https://updates.example/repo"
SHA = {name: char * 64 for name, char in
       [("p1150", "1"), ("p1152", "2"), ("m1150", "3"), ("m1152", "4"), ("u", "5")]}

GOOD_BUILD = BuildInfo(build=1152, previous=1150, deleted=("Program/old.dll", "Ä/ß.txt"),
                       unpacked_size=4096, files=7, manifest="manifests/1152.json")


# --- the round trip --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [GOOD_BUILD,
     BuildInfo(build=1147, previous=None, deleted=(), unpacked_size=0, files=0,
               manifest="manifests/1147.json")],
)
def test_build_info_round_trip(info: BuildInfo) -> None:
    assert BuildInfo.from_custom(info.to_custom()) == info
    # The record travels as JSON inside the signed metadata.
    assert BuildInfo.from_custom(json.loads(json.dumps(info.to_custom()))) == info


def test_build_info_custom_shape() -> None:
    assert GOOD_BUILD.to_custom() == {CUSTOM_KEY: {
        "kind": "build", "build": 1152, "previous": 1150,
        "deleted": ["Program/old.dll", "Ä/ß.txt"], "unpacked_size": 4096, "files": 7,
        "manifest": "manifests/1152.json"}}


def test_build_record_without_files_reads_as_zero_files() -> None:
    custom = GOOD_BUILD.to_custom()
    del custom[CUSTOM_KEY]["files"]
    assert BuildInfo.from_custom(custom).files == 0


def test_updater_info_round_trip() -> None:
    info = UpdaterInfo(platform="win64", version="2.1.0")
    assert info.to_custom() == {CUSTOM_KEY: {"kind": "updater", "platform": "win64",
                                             "version": "2.1.0"}}
    assert UpdaterInfo.from_custom(json.loads(json.dumps(info.to_custom()))) == info


def test_updater_record_without_version_reads_as_empty_version() -> None:
    custom = {CUSTOM_KEY: {"kind": "updater", "platform": "win64"}}
    assert UpdaterInfo.from_custom(custom) == UpdaterInfo(platform="win64", version="")


def test_manifest_info_custom() -> None:
    custom = ManifestInfo(build=1150).to_custom()
    assert custom == {CUSTOM_KEY: {"kind": "manifest", "build": 1150}}
    assert kind_of(custom) == "manifest"


@pytest.mark.parametrize(
    ("custom", "kind"),
    [(GOOD_BUILD.to_custom(), "build"), (ManifestInfo(1).to_custom(), "manifest"),
     (UpdaterInfo("win64", "1").to_custom(), "updater"), (None, None), ({}, None),
     ("opusi", None), ([CUSTOM_KEY], None), ({CUSTOM_KEY: None}, None),
     ({CUSTOM_KEY: "build"}, None), ({CUSTOM_KEY: {"kind": 3}}, None),
     ({CUSTOM_KEY: {}}, None), ({"other": {"kind": "build"}}, None)],
)
def test_kind_of(custom: object, kind: str | None) -> None:
    assert kind_of(custom) == kind


# --- refusals ---------------------------------------------------------------------------------


def _build_custom(**changes: Any) -> dict[str, Any]:
    custom = copy.deepcopy(GOOD_BUILD.to_custom())
    for key, value in changes.items():
        if value is KeyError:
            del custom[CUSTOM_KEY][key]
        else:
            custom[CUSTOM_KEY][key] = value
    return custom


@pytest.mark.parametrize(
    ("custom", "reason"),
    [(_build_custom(build=KeyError), "'build' is missing"),
     (_build_custom(unpacked_size=KeyError), "'unpacked_size' is missing"),
     (_build_custom(manifest=KeyError), "'manifest' is missing"),
     (_build_custom(deleted=KeyError), "'deleted' is not a list"),
     (_build_custom(build="1152"), "'build' is missing or not a whole number"),
     (_build_custom(previous="1150"), "'previous' is missing or not a whole number"),
     (_build_custom(unpacked_size=1.5), "'unpacked_size'"),
     (_build_custom(files="7"), "'files'"),
     (_build_custom(build=True), "'build' is missing or not a whole number"),
     (_build_custom(previous=False), "'previous'"),
     (_build_custom(files=False), "'files'"),
     (_build_custom(deleted="Program/old.dll"), "'deleted' is not a list of paths"),
     (_build_custom(deleted=["a.dll", 3]), "'deleted' is not a list of paths"),
     (_build_custom(deleted=("a.dll",)), "'deleted' is not a list of paths"),
     (_build_custom(manifest=""), "'manifest' is missing or not a name"),
     (_build_custom(manifest=5), "'manifest'"),
     (_build_custom(kind="updater"), "not a build record"),
     (_build_custom(kind=KeyError), "not a build record"),
     (ManifestInfo(1152).to_custom(), "not a build record"),
     ({"other": GOOD_BUILD.to_custom()[CUSTOM_KEY]}, "not a build record"),
     (None, "not a build record"), ([], "not a build record")],
)
def test_build_info_refuses_incomplete_or_mistyped_records(custom: object, reason: str) -> None:
    with pytest.raises(SchemaError) as raised:
        BuildInfo.from_custom(custom)
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("custom", "reason"),
    [({CUSTOM_KEY: {"kind": "updater", "version": "1"}}, "'platform' is missing"),
     ({CUSTOM_KEY: {"kind": "updater", "platform": "", "version": "1"}}, "'platform'"),
     ({CUSTOM_KEY: {"kind": "updater", "platform": 64, "version": "1"}}, "'platform'"),
     (GOOD_BUILD.to_custom(), "not a updater record"), (None, "not a updater record")],
)
def test_updater_info_refuses_incomplete_records(custom: object, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        UpdaterInfo.from_custom(custom)


def test_schema_error_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


# --- hashed_path ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("packages/1150.7z", "packages/abc.1150.7z"), ("root.json", "abc.root.json"),
     ("updaters/win64/opusi-update.exe", "updaters/win64/abc.opusi-update.exe")],
)
def test_hashed_path(name: str, expected: str) -> None:
    assert hashed_path(name, "abc") == expected


# --- describe_targets -------------------------------------------------------------------------


def _build_target(number: int, previous: int | None, sha: str, length: int) -> SignedTarget:
    info = BuildInfo(number, previous, (f"Program/{number}.old",), length * 3, 2,
                     f"manifests/{number}.json")
    return SignedTarget(length=length, sha256=sha, custom=info.to_custom())


def _targets() -> dict[str, SignedTarget]:
    # 1152 first: the view must sort by build number, not keep the metadata's order.
    return {
        "packages/1152.7z": _build_target(1152, 1150, SHA["p1152"], 200),
        "packages/1150.7z": _build_target(1150, None, SHA["p1150"], 100),
        "manifests/1150.json": SignedTarget(11, SHA["m1150"], ManifestInfo(1150).to_custom()),
        "manifests/1152.json": SignedTarget(12, SHA["m1152"], ManifestInfo(1152).to_custom()),
        "updaters/win64/opusi-update.exe": SignedTarget(
            50, SHA["u"], UpdaterInfo("win64", "2.0").to_custom()),
        "README.txt": SignedTarget(3, "6" * 64, None),
        "other/thing.bin": SignedTarget(4, "", {"someone-else": {"kind": "build"}}),
        "other/odd.bin": SignedTarget(5, "", {CUSTOM_KEY: {"kind": "something-new"}}),
    }


def test_describe_targets_lists_builds_sorted_with_their_urls() -> None:
    repo = describe_targets(BASE, _targets())
    assert [b.build for b in repo.builds] == [1150, 1152]
    first, second = repo.builds
    assert first.previous is None and second.previous == 1150
    assert second.deleted == ("Program/1152.old",)
    assert second.unpacked_size == 600
    assert second.package == RemoteFile(
        "packages/1152.7z", f"{BASE}/targets/packages/{SHA['p1152']}.1152.7z", 200, SHA["p1152"])
    assert second.manifest == RemoteFile(
        "manifests/1152.json", f"{BASE}/targets/manifests/{SHA['m1152']}.1152.json", 12,
        SHA["m1152"])
    assert first.package.url == f"{BASE}/targets/packages/{SHA['p1150']}.1150.7z"


def test_describe_targets_lists_updaters_and_ignores_foreign_targets() -> None:
    repo = describe_targets(BASE, _targets())
    assert repo.updaters == (RemoteUpdater("win64", "2.0", RemoteFile(
        "updaters/win64/opusi-update.exe",
        f"{BASE}/targets/updaters/win64/{SHA['u']}.opusi-update.exe", 50, SHA["u"])),)
    assert len(repo.builds) == 2


def test_describe_targets_of_nothing() -> None:
    assert describe_targets(BASE, {}) == RepositoryView(builds=(), updaters=())


@pytest.mark.parametrize(
    ("target", "change", "reason"),
    [("packages/1150.7z", "drop:manifests/1150.json", "manifest 'manifests/1150.json'"),
     ("packages/1152.7z", "unsign:manifests/1152.json", "manifest 'manifests/1152.json'"),
     ("packages/1150.7z", "unsign:packages/1150.7z", "has no sha256"),
     ("updaters/win64/opusi-update.exe", "unsign:updaters/win64/opusi-update.exe",
      "it has no sha256"),
     ("packages/1152.7z", "garble:packages/1152.7z", "'build' is missing or not a whole number")],
)
def test_describe_targets_refusal_names_the_target(target: str, change: str, reason: str) -> None:
    targets = _targets()
    action, name = change.split(":")
    if action == "drop":
        del targets[name]
    elif action == "unsign":
        targets[name] = SignedTarget(targets[name].length, "", targets[name].custom)
    else:
        custom = copy.deepcopy(targets[name].custom)
        assert isinstance(custom, dict)
        custom[CUSTOM_KEY]["build"] = "1152"
        targets[name] = SignedTarget(targets[name].length, targets[name].sha256, custom)
    with pytest.raises(SchemaError) as raised:
        describe_targets(BASE, targets)
    message = str(raised.value)
    assert message.startswith(f"The signed entry of {target} is incomplete (")
    assert reason in message
    assert isinstance(raised.value.__cause__, SchemaError)


def test_updater_for() -> None:
    win = RemoteUpdater("win64", "2.0", RemoteFile("w", "u/w", 1, "a"))
    lin = RemoteUpdater("linux", "2.1", RemoteFile("l", "u/l", 1, "b"))
    repo = RepositoryView(builds=(), updaters=(win, lin))
    assert repo.updater_for("win64") is win
    assert repo.updater_for("linux") is lin
    assert repo.updater_for("win32") is None
    assert RepositoryView(builds=(), updaters=()).updater_for("win64") is None


# --- delta packages ----------------------------------------------------------------------------

DELTA = DeltaInfo(build=1152, previous=1150, unpacked_size=900, files=(
    ("Program/big.dll", DeltaFile(5000, "a" * 64, 5100, "b" * 64)),
    ("opusi.exe", DeltaFile(7000, "c" * 64, 7000, "d" * 64))))


def test_delta_info_round_trip() -> None:
    assert DeltaInfo.from_custom(json.loads(json.dumps(DELTA.to_custom()))) == DELTA
    assert kind_of(DELTA.to_custom()) == "delta"


@pytest.mark.parametrize("entry", [[5000, "a" * 64, 5100], [5000, "a" * 63, 5100, "b" * 64],
                                   ["5000", "a" * 64, 5100, "b" * 64], "x"])
def test_delta_info_refuses_misshapen_entries(entry: object) -> None:
    custom = DELTA.to_custom()
    custom[CUSTOM_KEY]["files"]["opusi.exe"] = entry
    with pytest.raises(SchemaError, match="'opusi.exe'"):
        DeltaInfo.from_custom(custom)


def _with_delta(previous: int, length: int) -> dict[str, SignedTarget]:
    targets = _targets()
    info = DeltaInfo(1152, previous, DELTA.files, 900)
    targets["deltas/1152.7z"] = SignedTarget(length, "7" * 64, info.to_custom())
    return targets


def test_describe_targets_attaches_the_delta_package_and_fetches_the_smaller() -> None:
    second = describe_targets(BASE, _with_delta(1150, 50)).builds[1]
    assert second.delta is not None and second.delta.files == DELTA.files
    assert second.fetch == second.delta.file and second.fetch.length == 50
    assert second.fetch_unpacked == 900
    assert second.fetch.url == f"{BASE}/targets/deltas/{'7' * 64}.1152.7z"
    larger = describe_targets(BASE, _with_delta(1150, 500)).builds[1]
    assert larger.fetch == larger.package and larger.fetch_unpacked == larger.unpacked_size


def test_a_delta_against_another_build_than_the_previous_is_ignored() -> None:
    second = describe_targets(BASE, _with_delta(1149, 50)).builds[1]
    assert second.delta is None and second.fetch == second.package
