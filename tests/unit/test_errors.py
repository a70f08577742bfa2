"""Unit tests of updater.core.errors: the OSError mapping, the error texts and the exit codes."""

from __future__ import annotations

import errno

import pytest

from updater.core import errors
from updater.core.errors import (
    DiskError,
    DiskSpaceError,
    FileLockedError,
    OpusiError,
    PlanError,
    all_error_classes,
    error_from_os,
    exit_code_for,
    os_error_kind,
)


def os_error(code: int | None, winerror: int | None = None) -> OSError:
    """An OSError as the OS raises it; ``winerror`` is set by hand where Python does not."""
    error = OSError(code, "the reason") if code is not None else OSError("the reason")
    if winerror is not None:
        error.winerror = winerror  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("error", "kind", "cls", "code"),
    [(os_error(errno.ENOSPC), "full", DiskSpaceError, 14),
     (os_error(getattr(errno, "EDQUOT", errno.ENOSPC)), "full", DiskSpaceError, 14),
     (os_error(errno.EACCES), "locked", FileLockedError, 15),
     (os_error(errno.EPERM), "locked", FileLockedError, 15),
     (os_error(errno.EROFS), "locked", FileLockedError, 15),
     (os_error(errno.EBUSY), "locked", FileLockedError, 15),
     (PermissionError("no permission"), "locked", FileLockedError, 15),
     (os_error(errno.EIO), "other", DiskError, 25),
     (os_error(errno.ENOENT), "other", DiskError, 25),
     (os_error(errno.ENOTDIR), "other", DiskError, 25),
     (os_error(None), "other", DiskError, 25),
     (os_error(errno.EACCES, winerror=32), "locked", FileLockedError, 15),
     (os_error(errno.EIO, winerror=32), "locked", FileLockedError, 15),
     (os_error(errno.EIO, winerror=33), "locked", FileLockedError, 15),
     (os_error(errno.EIO, winerror=5), "locked", FileLockedError, 15),
     (os_error(errno.EIO, winerror=112), "full", DiskSpaceError, 14),
     (os_error(errno.EACCES, winerror=112), "full", DiskSpaceError, 14),
     (os_error(errno.EIO, winerror=39), "full", DiskSpaceError, 14),
     (os_error(errno.EIO, winerror=2), "other", DiskError, 25)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_os_error_mapping(error: OSError, kind: str, cls: type[OpusiError], code: int) -> None:
    assert os_error_kind(error) == kind
    mapped = error_from_os(error, "write C:/opus/Program/a.dll")
    assert type(mapped) is cls
    assert mapped.exit_code == code
    assert exit_code_for(mapped) == code
    assert mapped.hint


def test_windows_constructor_form_maps_by_winerror() -> None:
    # OSError(errno, strerror, filename, winerror): Windows sets .winerror; elsewhere set it.
    error = OSError(None, "sharing violation", "C:/opus/a.dll", 32)
    if not hasattr(error, "winerror"):
        error.winerror = 32  # type: ignore[attr-defined]
    assert os_error_kind(error) == "locked"
    assert isinstance(error_from_os(error, "replace a.dll"), FileLockedError)


def test_messages_start_with_what_failed() -> None:
    doing = "write the journal in C:/opus"
    full = error_from_os(os_error(errno.ENOSPC), doing)
    assert full.message == "The disk is full: could not write the journal in C:/opus."
    assert "Free some disk space" in full.hint
    locked = error_from_os(os_error(errno.EACCES), doing)
    assert locked.message == "Could not write the journal in C:/opus: the reason."
    assert "Close opus i" in locked.hint
    other = error_from_os(os_error(errno.EIO), doing)
    assert other.message == "Could not write the journal in C:/opus: the reason."
    assert "chkdsk" in other.hint


def test_message_without_strerror_uses_the_error_text() -> None:
    mapped = error_from_os(OSError("device went away"), "read BUILD")
    assert mapped.message == "Could not read BUILD: device went away."


def test_keeping_sets_safe_only_when_empty() -> None:
    error = PlanError("no path")
    assert error.keeping("Nothing was changed.") is error
    assert error.safe == "Nothing was changed."
    assert error.keeping("The backup was restored.").safe == "Nothing was changed."
    preset = PlanError("no path", safe="Kept as it was.")
    assert preset.keeping("Nothing was changed.").safe == "Kept as it was."


@pytest.mark.parametrize(
    ("message", "safe", "hint", "text"),
    [("It failed.", "Nothing was changed.", "Try again.",
      "It failed. Nothing was changed. Try again."),
     ("It failed.", "", "Try again.", "It failed. Try again."),
     ("It failed.", "Nothing was changed.", "", "It failed. Nothing was changed."),
     ("It failed.", "", "", "It failed.")],
)
def test_str_joins_message_safe_hint(message: str, safe: str, hint: str, text: str) -> None:
    error = OpusiError(message, safe=safe, hint=hint)
    assert str(error) == text
    assert (error.message, error.safe, error.hint) == (message, safe, hint)


@pytest.mark.parametrize(
    ("error", "code"),
    [(PlanError("x"), 21), (errors.LicenseRefusedError("x"), 2), (OpusiError("x"), 70),
     (KeyboardInterrupt(), 130), (ValueError("x"), 70), (SystemExit(3), 70)],
)
def test_exit_code_for(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def _every_subclass(cls: type[OpusiError]) -> list[type[OpusiError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_every_subclass(sub))
    return found


def test_every_error_class_has_its_own_code() -> None:
    # all_error_classes() keeps one class per code, so check every subclass directly too.
    classes = [c for c in _every_subclass(OpusiError) if c.__module__ == errors.__name__]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes))
    assert all_error_classes() == sorted(classes, key=lambda c: c.exit_code)


def test_all_error_classes_in_code_order() -> None:
    listed = all_error_classes()
    codes = [c.exit_code for c in listed]
    assert codes == sorted(codes)
    assert {1, 2, 6, 7, 14, 15, 21, 24, 25, 70} <= set(codes)
    assert 130 not in codes
    assert all(c.title and c.__doc__ for c in listed)
