"""A compromised build machine, for tests only: it signs whatever package it is given.

The fault suite's attackers hold the vendor's real keys (of a *copy* of the repository) and
publish crafted 7z files as builds, with signed metadata that is valid in every respect. Only
the updater's own checks of a package's header and content stand between them and an install.

Also here: writing 7z files py7zr would refuse to write (``../x``, ``/etc/x``), by writing a
placeholder of the same length into an unencoded header and patching the bytes afterwards.
"""

from __future__ import annotations

import binascii
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import py7zr
from py7zr.archiveinfo import write_uint64
from securesystemslib.signer import Signer

from updater.core import manifest as mf
from updater.publisher import publish, repository

_SIGNATURE_HEADER = 32


def sign_build(
    repo: Path,
    keys: Path,
    build: int,
    previous: int | None,
    package_file: Path,
    deleted: Sequence[str] = (),
    unpacked_size: int | None = None,
    manifest: Mapping[str, mf.FileEntry] | None = None,
) -> Path:
    """Publish ``package_file`` as build ``build``, signed with the repository's own keys.

    Replaces the build's entry if it is published; keeps the build's signed manifest unless
    ``manifest`` is given. No check of the package or of the paths is made.

    Returns:
        The package's path in ``targets/``.
    """
    with repository.locked(repo):
        state = repository.load_state(repo)
        signers = {
            r: repository.load_role_signer(repo, keys, r, state) for r in repository.ROLES[1:]
        }
        manifest_name = f"manifests/{build}.json"
        info: dict[str, object] = {
            "kind": "build",
            "build": build,
            "previous": previous,
            "deleted": list(deleted),
            "unpacked_size": declared_size(package_file)
            if unpacked_size is None
            else unpacked_size,
            "files": 0,
            "manifest": manifest_name,
        }
        with tempfile.TemporaryDirectory(dir=repo, prefix=".evil-") as scratch:
            staged = Path(scratch) / f"{build}.7z"
            shutil.copyfile(package_file, staged)
            with repository.new_targets_version(repo, state, signers) as (targets, placed):
                if manifest is not None:
                    staged_manifest = Path(scratch) / f"{build}.json"
                    staged_manifest.write_bytes(mf.manifest_to_json(manifest))
                    kind = {"opusi": {"kind": "manifest", "build": build}}
                    publish._add_target(
                        repo, targets, staged_manifest, manifest_name, kind, placed
                    )
                elif manifest_name not in targets.signed.targets:
                    raise ValueError(f"build {build} has no manifest to keep; pass one")
                target = publish._add_target(
                    repo, targets, staged, f"builds/{build}.7z", {"opusi": info}, placed
                )
    return repository.target_file(repo, target)


def sign_with(
    repo: Path, signers: Mapping[str, Signer], edit: Mapping[str, Path] | None = None
) -> None:
    """Re-sign targets, snapshot and timestamp of ``repo`` with ``signers`` (maybe foreign).

    ``edit`` maps a build's package name (``builds/1148.7z``) to a file to list under it.
    """
    state = repository.load_state(repo)
    targets = state.targets
    targets.signed.version += 1
    with tempfile.TemporaryDirectory(dir=repo, prefix=".evil-") as scratch:
        for name, path in (edit or {}).items():
            staged = Path(scratch) / path.name
            shutil.copyfile(path, staged)
            custom = dict(targets.signed.targets[name].custom)
            publish._add_target(repo, targets, staged, name, custom, [])
        repository.commit_targets(
            repo,
            targets,
            signers,
            snapshot_version=state.snapshot.signed.version,
            timestamp_version=state.timestamp.signed.version,
        )


def declared_size(package_file: Path) -> int:
    """Sum of the sizes a package's header declares (0 when it cannot be read)."""
    try:
        with py7zr.SevenZipFile(package_file, "r") as archive:
            return sum(int(i.uncompressed or 0) for i in archive.list())
    except Exception:  # a corrupt header: the attacker signs whatever size it likes
        return 0


def write_archive(
    dest: Path,
    files: Mapping[str, bytes],
    *,
    rename: Mapping[str, str] | None = None,
    links: Mapping[str, str] | None = None,
    folders: Sequence[str] = (),
    preset: int = 1,
) -> Path:
    """Write a 7z with an unencoded header holding ``files`` (name -> content).

    Args:
        dest: The 7z to write.
        files: Entries, by the name written (a placeholder where ``rename`` maps it).
        rename: Placeholder name -> the real name, patched into the header afterwards; both
            must have the same length in UTF-16.
        links: Symbolic link entries, name -> link target (real links, stored as links).
        folders: Folder entries.
        preset: LZMA2 preset.
    """
    filters = [{"id": py7zr.FILTER_LZMA2, "preset": preset}]
    with (
        tempfile.TemporaryDirectory() as scratch,
        py7zr.SevenZipFile(dest, "w", filters=filters) as archive,
    ):
        archive.set_encoded_header_mode(False)
        for i, (name, target) in enumerate((links or {}).items()):  # first: py7zr needs that
            link = Path(scratch) / f"d{i}" / "l" / "link"
            aimed = link.parent / target
            link.parent.mkdir(parents=True)
            aimed.parent.mkdir(parents=True, exist_ok=True)
            if not aimed.exists():  # py7zr reads only links that resolve
                aimed.touch()
            os.symlink(target, link)
            archive.write(link, arcname=name)
        for i, name in enumerate(folders):
            folder = Path(scratch) / f"folder{i}"
            folder.mkdir()
            archive.write(folder, arcname=name)
        for name, data in files.items():
            archive.writestr(data, name)
    for placeholder, real in (rename or {}).items():
        patch_header(dest, placeholder.encode("utf-16-le"), real.encode("utf-16-le"))
    return dest


def write_archive_from_file(dest: Path, source: Path, arcname: str, preset: int = 1) -> Path:
    """A 7z with an unencoded header holding one file read from disk (for large content)."""
    filters = [{"id": py7zr.FILTER_LZMA2, "preset": preset}]
    with py7zr.SevenZipFile(dest, "w", filters=filters) as archive:
        archive.set_encoded_header_mode(False)
        archive.write(source, arcname=arcname)
    return dest


def encoded_number(value: int) -> bytes:
    """A number as 7z's header stores it."""
    buffer = io.BytesIO()
    write_uint64(buffer, value)
    return buffer.getvalue()


def patch_header(package_file: Path, old: bytes, new: bytes) -> None:
    """Replace every ``old`` in the (unencoded) header by ``new`` and fix both header CRCs."""
    if len(old) != len(new):
        raise ValueError("a patch must keep the header's length")
    data = bytearray(package_file.read_bytes())
    offset, size = struct.unpack_from("<QQ", data, 12)
    start = _SIGNATURE_HEADER + offset
    header = bytes(data[start : start + size])
    if old not in header:
        raise ValueError(f"{old!r} is not in the header of {package_file}")
    header = header.replace(old, new)
    data[start : start + size] = header
    struct.pack_into("<I", data, 28, binascii.crc32(header))
    struct.pack_into("<I", data, 8, binascii.crc32(bytes(data[12:32])))
    package_file.write_bytes(bytes(data))


def many_entries(dest: Path, count: int) -> Path:
    """A package of ``count`` one-byte files in 100 folders."""
    return write_archive(dest, {f"Program/m{i % 100}/f{i}.txt": b"x" for i in range(count)})


def read_manifest(repo: Path, build: int) -> dict[str, mf.FileEntry]:
    """The signed manifest of a published build."""
    state = repository.load_state(repo)
    entry = state.target(f"manifests/{build}.json")
    return mf.manifest_from_json((repository.target_file(repo, entry)).read_bytes())


def package_path(repo: Path, build: int) -> Path:
    """Where the package of a published build lies in ``targets/``."""
    state = repository.load_state(repo)
    return repository.target_file(repo, state.builds()[build])


def build_info(repo: Path, build: int) -> dict[str, object]:
    """The signed ``opusi`` entry of a published build."""
    state = repository.load_state(repo)
    return dict(state.builds()[build].custom["opusi"])
