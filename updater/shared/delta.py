"""Binary deltas of single files: zstd's "patch-from" (the old file as the new one's prefix).

The vendor's publisher makes a delta of a changed file against the previous build's version
(:func:`make`); the updater rebuilds the new file from the installed one (:func:`rebuild`). No
diff algorithm of our own: zstd (``backports.zstd``, which py7zr already brings; the standard
library's ``compression.zstd`` from Python 3.14) matches the new file against the old one held
in memory as a raw prefix, with a window as large as the larger file and long-distance matching.

Memory: the old file, the delta and the new file are all held at once, and zstd's window is as
large as the file, so files above :data:`MAX_FILE` are always shipped whole.
"""

from __future__ import annotations

from typing import Any

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

#: Files larger than this (old or new) are shipped whole: rebuilding one holds the old file,
#: the new file and a window as large as the file in memory (about 3x its size at the peak).
MAX_FILE = 128 * 1024 * 1024
#: Files smaller than this are shipped whole: a delta saves too little to be worth a step.
MIN_FILE = 64 * 1024
#: The level the publisher uses. Measured on real DLLs (pyarrow's Windows wheels, three
#: updates): the chain's delta packages were 0.350 of the full ones at level 9, 0.311 at 12 in
#: the same time, 0.306 at 15 in 1.7x the time (HDiffPatch would reach about 0.2, at the cost
#: of a new native dependency).
LEVEL = 12


class DeltaError(Exception):
    """A delta could not be made or applied (a corrupt delta, a wrong base, too large)."""


def _window_log(*sizes: int) -> int:
    return min(max(max(sizes).bit_length(), 10), 31)


def make(old: bytes, new: bytes, level: int = LEVEL) -> bytes:
    """The delta that turns ``old`` into ``new``.

    Raises:
        DeltaError: One of the files is larger than :data:`MAX_FILE`, or the old one is too
            short to refer to (zstd needs 8 bytes).
    """
    if max(len(old), len(new)) > MAX_FILE:
        raise DeltaError(f"a file above {MAX_FILE} bytes is shipped whole")
    if len(old) < 8:
        raise DeltaError("a file of less than 8 bytes is no base for a delta")
    options: dict[Any, int] = {
        zstd.CompressionParameter.compression_level: level,
        zstd.CompressionParameter.window_log: _window_log(len(old), len(new)),
        zstd.CompressionParameter.enable_long_distance_matching: 1,
        zstd.CompressionParameter.checksum_flag: 1,
    }
    prefix = zstd.ZstdDict(old, is_raw=True).as_prefix
    return bytes(zstd.compress(new, options=options, zstd_dict=prefix))


def compressed_size(data: bytes, level: int = 3) -> int:
    """Bytes ``data`` takes compressed on its own by zstd (what a delta must clearly beat)."""
    return len(zstd.compress(data, level=level))


def rebuild(old: bytes, delta: bytes, size: int) -> bytes:
    """The new file from ``old`` and its ``delta``; at most ``size`` bytes are produced.

    The caller checks the result against the signed manifest; zstd's own checksum catches a
    damaged delta earlier.

    Raises:
        DeltaError: The delta is damaged, was made against another file, or gives a file of
            another size than ``size``.
    """
    if max(len(old), size) > MAX_FILE:
        raise DeltaError(f"a file above {MAX_FILE} bytes cannot be rebuilt from a delta")
    options = {zstd.DecompressionParameter.window_log_max: _window_log(len(old), size)}
    try:
        decompressor = zstd.ZstdDecompressor(
            zstd_dict=zstd.ZstdDict(old, is_raw=True).as_prefix, options=options)
        data = decompressor.decompress(delta, max_length=size + 1)
        complete = decompressor.eof and not decompressor.unused_data
    except (zstd.ZstdError, EOFError, ValueError) as e:
        raise DeltaError(f"the delta cannot be applied: {e}") from e
    if len(data) != size or not complete:
        raise DeltaError(f"the delta gave {len(data)} bytes instead of {size}")
    return bytes(data)
