"""Binary deltas of single files, by HDiffPatch (``hdiffpatch`` on PyPI, LZMA2-compressed).

The vendor's publisher makes a delta of a changed file against the previous build's version
(:func:`make`); the updater rebuilds the new file from the installed one (:func:`rebuild`) and
checks it against the signed manifest's sha256 before anything else sees it. No diff algorithm
of our own.

Chosen by measurement on real DLLs (pyarrow's Windows wheels 25.0.1 -> 26.0.0, the ten changed
files above 1 MB, 64.8 MB): zstd level 15 alone 19.0 MB; zstd's "patch-from" at level 12 (what
this module used first) 6.3 MB; HDiffPatch with zstd 3.9 MB, with LZMA2 3.5 MB, about 3.5x the
diff time of patch-from (publisher side only) and 0.07 s to apply the 18.7 MB ``arrow.dll``.
HDiffPatch refused every damaged, truncated, extended or foreign delta tried, and a delta made
against another file; a wrong result it could not notice is caught by the sha256.

Memory: the old file, the delta and the new file are held at once when rebuilding (about 2x the
file); making a delta takes about 10x the old file (HDiffPatch's suffix array), on the
vendor's machine. Files above :data:`MAX_FILE` are always shipped whole.
"""

from __future__ import annotations

import hashlib

import hdiffpatch

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

#: Files larger than this (old or new) are shipped whole: rebuilding one holds the old and the
#: new file in memory, and making its delta about 10x the old one.
MAX_FILE = 128 * 1024 * 1024
#: Files smaller than this are shipped whole: a delta saves too little to be worth a step.
MIN_FILE = 64 * 1024
#: The compression of the delta's own streams: LZMA2, level 9, an 8 MiB dictionary (the
#: deltas are far smaller than that; it is also what the updater needs to hold to apply one).
COMPRESSION = hdiffpatch.Lzma2Config(level=9, window=23, threads=1)


class DeltaError(Exception):
    """A delta could not be made or applied (a corrupt delta, a wrong base, too large)."""


def make(old: bytes, new: bytes) -> bytes:
    """The delta that turns ``old`` into ``new``.

    Raises:
        DeltaError: One of the files is larger than :data:`MAX_FILE`, or the old one is too
            short to refer to.
    """
    if max(len(old), len(new)) > MAX_FILE:
        raise DeltaError(f"a file above {MAX_FILE} bytes is shipped whole")
    if len(old) < 8:
        raise DeltaError("a file of less than 8 bytes is no base for a delta")
    try:
        # validate=False: the publisher rebuilds every delta with rebuild() below, the
        # updater's own code path, before it publishes one
        return bytes(hdiffpatch.diff(old, new, compression=COMPRESSION, validate=False,
                                     big_cache_match=True))
    except hdiffpatch.HDiffPatchError as e:
        raise DeltaError(f"the delta cannot be made: {e}") from e


def compressed_size(data: bytes, level: int = 3) -> int:
    """Bytes ``data`` takes compressed on its own by zstd (what a delta must clearly beat)."""
    return len(zstd.compress(data, level=level))


def rebuild(old: bytes, delta: bytes, size: int, sha256: str) -> bytes:
    """The new file from ``old`` and its ``delta``: ``size`` bytes whose sha256 is ``sha256``.

    Raises:
        DeltaError: The delta is damaged, was made against another file, or gives another
            file than the one expected.
    """
    if max(len(old), size) > MAX_FILE:
        raise DeltaError(f"a file above {MAX_FILE} bytes cannot be rebuilt from a delta")
    try:
        data = hdiffpatch.apply(old, delta)
    except (hdiffpatch.HDiffPatchError, ValueError, MemoryError) as e:
        raise DeltaError(f"the delta cannot be applied: {e}") from e
    if len(data) != size:
        raise DeltaError(f"the delta gave {len(data)} bytes instead of {size}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DeltaError("the delta gives a file that does not match the signed manifest")
    return bytes(data)
