"""Unit tests of updater.shared.delta: HDiffPatch deltas of single files."""

from __future__ import annotations

import hashlib
import random

import pytest

from updater.shared import delta

RNG = random.Random(7)
OLD = RNG.randbytes(300_000)
NEW = OLD[:100_000] + RNG.randbytes(2_000) + OLD[100_000:250_000] + b"tail" * 100
NEW_SHA = hashlib.sha256(NEW).hexdigest()
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def test_round_trip_and_size() -> None:
    patch = delta.make(OLD, NEW)
    assert len(patch) < 0.05 * len(NEW)  # against a file that cannot be compressed at all
    assert delta.rebuild(OLD, patch, len(NEW), NEW_SHA) == NEW


def test_empty_files() -> None:
    assert delta.rebuild(OLD, delta.make(OLD, b""), 0, EMPTY_SHA) == b""
    with pytest.raises(delta.DeltaError, match="8 bytes"):
        delta.make(b"1234567", NEW)
    with pytest.raises(delta.DeltaError):
        delta.rebuild(b"", delta.make(OLD, NEW), len(NEW), NEW_SHA)


@pytest.mark.parametrize("case", ["damaged", "other base", "same-size other base", "shorter",
                                  "longer", "truncated", "trailing", "not a delta",
                                  "wrong result"])
def test_a_wrong_delta_is_refused(case: str) -> None:
    patch, base, size, digest = delta.make(OLD, NEW), OLD, len(NEW), NEW_SHA
    if case == "damaged":
        broken = bytearray(patch)
        broken[len(broken) // 2] ^= 0x40
        patch = bytes(broken)
    elif case == "other base":
        base = NEW
    elif case == "same-size other base":  # nothing in the delta can tell; the sha256 does
        base = OLD[:1000] + bytes([OLD[1000] ^ 1]) + OLD[1001:]
    elif case == "shorter":
        size -= 1
    elif case == "longer":
        size += 1
    elif case == "truncated":
        patch = patch[:-10]
    elif case == "trailing":
        patch += b"x"
    elif case == "wrong result":
        digest = hashlib.sha256(b"another file").hexdigest()
    else:
        patch = b"PK\x03\x04" + patch
    with pytest.raises(delta.DeltaError):
        delta.rebuild(base, patch, size, digest)


def test_files_above_the_limit_are_shipped_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delta, "MAX_FILE", 1000)
    with pytest.raises(delta.DeltaError, match="whole"):
        delta.make(OLD, NEW)
    with pytest.raises(delta.DeltaError):
        delta.rebuild(OLD, b"", 10, NEW_SHA)
