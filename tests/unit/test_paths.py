"""The messages of the path rules for names that collide on Windows or only look alike."""

from __future__ import annotations

import pytest

from updater.core.errors import UnsafeArchiveError
from updater.core.paths import check_member_names


def test_case_collision_names_windows() -> None:
    with pytest.raises(UnsafeArchiveError, match="differ only by case; Windows would hold"):
        check_member_names(["Program/Modul.dll", "program/MODUL.dll"])


def test_nfc_nfd_collision_is_not_called_a_case_difference() -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        check_member_names(["Program/\u00c4.txt", "Program/A\u0308.txt"])
    assert "NFC and NFD" in str(raised.value) and "case" not in str(raised.value)


def test_distinct_names_pass_in_order() -> None:
    names = ["b/Ä.txt", "a/ä.txt", "a/Straße.ini"]
    assert check_member_names(names) == names
