"""The license registry (a real SQLite file in tmp_path) and the pure judge."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from updater.core.errors import LicenseDatabaseError
from updater.core.protocol import ANSWER_MALFORMED, ANSWER_REFUSED, ANSWER_UNREGISTERED
from updater.publisher.database import SCHEMA_VERSION
from updater.publisher.licenses import License, judge, open_registry

TODAY = date(2025, 6, 15)


def _license(status: str = "active", until: date | None = None) -> License:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return License("ABC-123", status, until, "", now, now)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", [None, "", "-abc", "a b", "x" * 33, "ä123", "1;DROP"])
def test_judge_missing_or_malformed_is_code_1(number: str | None) -> None:
    answer = judge(None, number, TODAY)
    assert answer is not None
    assert (answer.code, answer.status) == (ANSWER_MALFORMED, 400)


def test_judge_unknown_is_code_7() -> None:
    answer = judge(None, "ABC-123", TODAY)
    assert answer is not None
    assert (answer.code, answer.status) == (ANSWER_UNREGISTERED, 403)
    assert "ABC-123" in answer.message


def test_judge_revoked_is_code_2() -> None:
    answer = judge(_license("revoked"), "ABC-123", TODAY)
    assert answer is not None
    assert (answer.code, answer.status) == (ANSWER_REFUSED, 403)
    assert "revoked" in answer.message


def test_judge_entitlement_ends_after_its_last_day() -> None:
    assert judge(_license(until=TODAY), "ABC-123", TODAY) is None
    answer = judge(_license(until=date(2025, 6, 14)), "ABC-123", TODAY)
    assert answer is not None
    assert answer.code == ANSWER_REFUSED
    assert "2025-06-14" in answer.message


def test_judge_active_without_end_is_allowed() -> None:
    assert judge(_license(), "ABC-123", TODAY) is None


def test_add_get_list_revoke(tmp_path: Path) -> None:
    with open_registry(tmp_path / "licenses.db") as registry:
        added = registry.add("B-2", entitled_until=date(2026, 1, 31), note="Kanzlei")
        registry.add("A-1", entitled_until=None)
        assert added.status == "active"
        assert added.entitled_until == date(2026, 1, 31)
        assert registry.get("B-2") == added
        assert registry.get("C-3") is None
        assert [lic.number for lic in registry.list()] == ["A-1", "B-2"]
        revoked = registry.revoke("B-2")
        assert revoked.status == "revoked"
        assert revoked.created == added.created


def test_readd_reactivates_and_sets_date_keeping_note(tmp_path: Path) -> None:
    with open_registry(tmp_path / "licenses.db") as registry:
        registry.add("A-1", entitled_until=date(2025, 1, 1), note="first")
        registry.revoke("A-1")
        again = registry.add("A-1", entitled_until=None)
        assert (again.status, again.entitled_until, again.note) == ("active", None, "first")
        assert registry.add("A-1", entitled_until=None, note="second").note == "second"
        assert len(registry.list()) == 1


def test_add_refuses_malformed_number(tmp_path: Path) -> None:
    with open_registry(tmp_path / "licenses.db") as registry:
        with pytest.raises(LicenseDatabaseError, match="malformed"):
            registry.add("no spaces", entitled_until=None)
        with pytest.raises(LicenseDatabaseError, match="no license number"):
            registry.add("", entitled_until=None)
        assert registry.list() == []


def test_revoke_unknown_number_says_so(tmp_path: Path) -> None:
    with (
        open_registry(tmp_path / "licenses.db") as registry,
        pytest.raises(LicenseDatabaseError, match="not registered"),
    ):
        registry.revoke("NOPE-1")


def test_registry_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    open_registry(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_open_without_create_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LicenseDatabaseError, match="does not exist"):
        open_registry(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_not_a_database_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LicenseDatabaseError, match="could not be opened: file is not a database"):
        open_registry(path)
    assert path.read_bytes() == b"this is not sqlite" * 100  # nothing written to it


def test_a_url_names_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    with open_registry(f"sqlite:///{path}") as registry:
        registry.add("A-1", entitled_until=None, note="Praxis Dr. A")
    with open_registry(path, create=False) as registry:
        assert [lic.note for lic in registry.list()] == ["Praxis Dr. A"]


@pytest.mark.parametrize(("location", "words"), [
    ("mysql://opusi:secret@127.0.0.1/opusi", "names a database this program does not use"),
    ("sqlite://", "names no file"),
    ("postgresql://opusi:secret@127.0.0.1:notaport/opusi", "is not a URL"),
])
def test_a_location_of_another_kind_is_refused(location: str, words: str) -> None:
    with pytest.raises(LicenseDatabaseError, match=words) as info:
        open_registry(location)
    assert "secret" not in str(info.value)  # a password is never shown


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    with open_registry(path) as registry:
        registry.add("A-1", entitled_until=None)
    with open_registry(path) as registry:  # open_registry migrates every time
        assert [lic.number for lic in registry.list()] == ["A-1"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT id, version FROM opusi_schema").fetchall() == [
            (1, SCHEMA_VERSION)]
    finally:
        conn.close()


def test_a_registry_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    open_registry(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE opusi_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(LicenseDatabaseError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_registry(path)


def test_a_table_of_the_same_name_but_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE licenses (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LicenseDatabaseError, match="not a license registry's"):
        open_registry(path)
    conn = sqlite3.connect(path)
    try:  # the failed migration left no trace
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert names == {"licenses"}
    finally:
        conn.close()


def test_corrupt_entry_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    with open_registry(path) as registry:
        registry.add("A-1", entitled_until=None)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE licenses SET entitled_until = 'someday'")
    conn.commit()
    conn.close()
    with open_registry(path) as registry, pytest.raises(LicenseDatabaseError, match="corrupt"):
        registry.get("A-1")


def test_writer_in_another_connection_is_seen_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "licenses.db"
    with open_registry(path) as reader, open_registry(path) as writer:
        writer.add("A-1", entitled_until=None)
        seen: list[License | None] = []
        thread = threading.Thread(target=lambda: seen.append(reader.get("A-1")))
        thread.start()
        thread.join()
        assert reader.get("A-1") is not None
        writer.revoke("A-1")
        found = reader.get("A-1")
        assert found is not None and found.status == "revoked"
        assert seen[0] is not None and seen[0].status == "active"
