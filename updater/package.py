"""Build packages: 7z archives written by the vendor's tool and read by the updater.

The only module that imports py7zr. Packages hold regular files only (no folders, links or
empty-folder entries). The vendor chooses the method: ``zstd`` (the default: unpacks about three
times faster than LZMA2 at about the same size, but stock 7-Zip cannot open it; 7-Zip-zstd and
NanaZip can, and ``opusi-INSTALLUpdate --list-package`` lists one) or ``lzma2`` (every 7-Zip
reads it).

Reading never extracts straight into an install: :func:`list_members` gives the names and
sizes to check first, and :func:`extract_to` writes into a staging folder with the size limit
from the signed metadata (py7zr checks a file's CRC only after writing it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import py7zr
import py7zr.exceptions

from updater.errors import PackageVerificationError, UnsafeArchiveError

log = logging.getLogger(__name__)

#: Compression methods the publisher offers, each one py7zr reads back.
METHODS: dict[str, list[dict[str, int]]] = {
    "zstd": [{"id": py7zr.FILTER_ZSTD, "level": 15}],
    "lzma2": [{"id": py7zr.FILTER_LZMA2, "preset": 5}],
}
DEFAULT_METHOD = "zstd"
_READ_ERRORS = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.PasswordRequired,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
)


@dataclass(frozen=True)
class Member:
    """One entry of a package, as its header declares it (not yet trusted)."""

    name: str
    size: int
    is_file: bool
    is_link: bool


def write_package(
    dest: Path, root: Path, names: Iterable[str], method: str = DEFAULT_METHOD
) -> None:
    """Write the files ``names`` (relative POSIX paths under ``root``) into a new 7z at ``dest``.

    Raises:
        OSError: A file cannot be read, or ``dest`` cannot be written.
        KeyError: ``method`` is not one of :data:`METHODS`.
    """
    with py7zr.SevenZipFile(dest, "w", filters=METHODS[method]) as archive:
        for name in names:
            archive.write(root / name, arcname=name)


def list_members(path: Path) -> list[Member]:
    """Read the header of a package.

    Raises:
        PackageVerificationError: The file is not a readable 7z archive.
    """
    try:
        with py7zr.SevenZipFile(path, "r") as archive:
            infos = archive.list()
    except (*_READ_ERRORS, OSError) as e:
        raise PackageVerificationError(f"Package {path.name} cannot be read: {e}") from e
    return [
        Member(
            name=info.filename,
            size=int(info.uncompressed or 0),
            is_file=not info.is_directory and not info.is_symlink,
            is_link=bool(info.is_symlink),
        )
        for info in infos
    ]


def extract_to(path: Path, dest: Path, max_size: int) -> None:
    """Extract every member of ``path`` into the (empty) staging folder ``dest``.

    The caller has checked the member names. py7zr stops once more than ``max_size`` bytes
    were written, and checks every file's CRC.

    Raises:
        UnsafeArchiveError: The package unpacks to more than ``max_size`` bytes.
        PackageVerificationError: The archive is corrupt (bad CRC, truncated, bad header).
    """
    try:
        with py7zr.SevenZipFile(path, "r", max_extract_size=max_size) as archive:
            archive.extractall(path=dest)
    except py7zr.exceptions.DecompressionBombError as e:
        raise UnsafeArchiveError(
            f"Package {path.name} unpacks to more than its declared {max_size} bytes."
        ) from e
    except py7zr.exceptions.CrcError as e:
        raise PackageVerificationError(f"Package {path.name} failed its CRC check: {e}") from e
    except py7zr.exceptions.AbsolutePathError as e:
        raise UnsafeArchiveError(f"Package {path.name} holds an absolute path: {e}") from e
    except _READ_ERRORS as e:
        raise PackageVerificationError(f"Package {path.name} is corrupt: {e}") from e
