"""Unit tests of updater.core.manifest: diff_manifests, TreeDiff and the JSON form."""

from __future__ import annotations

import json

import pytest

from updater.core.manifest import (
    FileEntry,
    TreeDiff,
    diff_manifests,
    manifest_from_json,
    manifest_to_json,
)

A, B, C = FileEntry(1, "a" * 64), FileEntry(2, "b" * 64), FileEntry(3, "c" * 64)


def test_diff_finds_added_changed_deleted() -> None:
    old = {"Program/keep.dll": A, "Program/size.dll": B, "Program/hash.dll": C,
           "Program/z-gone.dll": A, "Program/a-gone.dll": B}
    new = {"Program/new2.dll": C, "Program/hash.dll": FileEntry(3, "d" * 64),
           "Program/keep.dll": A, "Program/size.dll": FileEntry(5, "b" * 64),
           "Program/new1.dll": A}
    diff = diff_manifests(old, new)
    assert diff.added == ("Program/new2.dll", "Program/new1.dll")  # in the new manifest's order
    assert diff.changed == ("Program/hash.dll", "Program/size.dll")
    assert diff.deleted == ("Program/a-gone.dll", "Program/z-gone.dll")  # sorted
    assert diff.written == ("Program/hash.dll", "Program/new1.dll", "Program/new2.dll",
                            "Program/size.dll")
    assert not diff.empty


def test_diff_of_equal_manifests_is_empty() -> None:
    manifest = {"a": A, "b": B}
    diff = diff_manifests(manifest, dict(manifest))
    assert diff == TreeDiff(added=(), changed=(), deleted=())
    assert diff.empty and diff.written == ()


def test_diff_from_nothing_adds_everything() -> None:
    diff = diff_manifests({}, {"b": B, "a": A})
    assert diff.written == ("a", "b")
    assert diff.deleted == ()


@pytest.mark.parametrize(
    "diff",
    [TreeDiff(added=(), changed=(), deleted=("x",)), TreeDiff(added=("x",), changed=(), deleted=()),
     TreeDiff(added=(), changed=("x",), deleted=())],
)
def test_any_change_makes_a_diff_non_empty(diff: TreeDiff) -> None:
    assert not diff.empty


def test_written_leaves_out_deleted_files() -> None:
    diff = TreeDiff(added=("c",), changed=("a",), deleted=("b",))
    assert diff.written == ("a", "c")


def test_json_round_trip() -> None:
    manifest = {"Program/opusi.exe": A, "Straße/Ä.txt": B, "BUILD": FileEntry(0, "e" * 64)}
    data = manifest_to_json(manifest)
    assert manifest_from_json(data) == manifest
    assert "Straße/Ä.txt".encode() in data  # UTF-8, not \u escapes


def test_json_is_deterministic_and_sorted() -> None:
    data = manifest_to_json({"b": B, "a": A})
    assert data == manifest_to_json({"a": A, "b": B})
    body = json.loads(data)
    assert body == {"format": 1, "files": {"a": [1, "a" * 64], "b": [2, "b" * 64]}}
    assert list(body["files"]) == ["a", "b"]


def test_empty_manifest_round_trip() -> None:
    assert manifest_from_json(manifest_to_json({})) == {}


@pytest.mark.parametrize(
    "data",
    [b'{"format": 2, "files": {}}', b'{"files": {}}', b'[1, {}]', b"null", b'"format"',
     b"{not json", b"\xff\xfe", b""],
)
def test_other_formats_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        manifest_from_json(data)


def test_wrong_entry_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        manifest_from_json(b'{"format": 1, "files": {"a": [1, "x", 3]}}')


@pytest.mark.parametrize(
    "data",
    [b'{"format": 1}', b'{"format": 1, "files": []}', b'{"format": 1, "files": {"a": 5}}'],
)
def test_malformed_format_1_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        manifest_from_json(data)
