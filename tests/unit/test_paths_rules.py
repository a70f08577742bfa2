"""Unit tests of updater.core.paths: path_problem, the excluded folders, fold, name clashes."""

from __future__ import annotations

import pytest

from updater.core.errors import UnsafeArchiveError
from updater.core.paths import (
    EXCLUDED_DIRS,
    MAX_PATH_LENGTH,
    check_member_names,
    excluded_dir_of,
    fold,
    is_excluded,
    path_problem,
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "empty name"),
     ("a" * (MAX_PATH_LENGTH + 1), "longer than 1024 characters"),
     ("/etc/passwd", "absolute path"),
     ("\\Windows\\evil.dll", "absolute path"),
     ("//server/share/a.dll", "UNC path"),
     ("\\\\server\\share\\a.dll", "UNC path"),
     ("C:/Windows/evil.dll", "drive letter"),
     ("c:evil.dll", "drive letter"),
     ("Program\\opusi.exe", "backslash in name"),
     ("..", "leads out of the install ('..')"),
     ("../evil.dll", "leads out of the install"),
     ("Program/../../evil.dll", "leads out of the install"),
     (".", "empty path component"),
     ("./a.dll", "empty path component"),
     ("Program/./a.dll", "empty path component"),
     ("Program//a.dll", "empty path component"),
     ("Program/", "empty path component"),
     ("a.txt:secret", "':' in name (drive or alternate data stream)"),
     ("Program/a.dll::$DATA", "':' in name"),
     ("a<b.txt", "character Windows does not allow"),
     ("a>b.txt", "character Windows does not allow"),
     ('a"b.txt', "character Windows does not allow"),
     ("a|b.txt", "character Windows does not allow"),
     ("a?b.txt", "character Windows does not allow"),
     ("Program/a*.dll", "character Windows does not allow"),
     ("a\x00b", "character Windows does not allow"),
     ("a\tb", "character Windows does not allow"),
     ("a\x1fb", "character Windows does not allow"),
     ("readme.", "trailing dot or space"),
     ("readme ", "trailing dot or space"),
     ("Program./a.dll", "trailing dot or space"),
     ("Program /a.dll", "trailing dot or space"),
     ("...", "trailing dot or space"),
     ("CON", "device name 'CON'"),
     ("con", "device name 'CON'"),
     ("COM1.txt", "device name 'COM1'"),
     ("Program/nul.dll", "device name 'NUL'"),
     ("lpt9.log", "device name 'LPT9'"),
     ("AUX.tar.gz", "device name 'AUX'"),
     ("prn .txt", "device name 'PRN'"),
     ("conin$", "device name 'CONIN$'"),
     ("CONOUT$.txt", "device name 'CONOUT$'"),
     ("COM\u00b9.txt", "device name 'COM\u00b9'")],
)
def test_refused_forms(name: str, problem: str) -> None:
    reason = path_problem(name)
    assert reason is not None
    assert reason.startswith(problem)


@pytest.mark.parametrize(
    "name",
    ["BUILD", "Program/opusi.exe", "Program/Sub Folder/a b.txt", "Straße/Ä.txt",
     "Program/.hidden", "a..b.txt", "COM10.txt", "CONSOLE.dll", "com0", "nullable.txt",
     "Program/con-fig.ini", "a" * MAX_PATH_LENGTH, "x/" * 100 + "y"],
)
def test_allowed_names(name: str) -> None:
    assert path_problem(name) is None


@pytest.mark.parametrize(
    ("path", "folder"),
    [("Help", "Help"), ("help", "Help"), ("HELP/sub/index.chm", "Help"),
     ("takeit/a.dat", "TakeIt"),
     ("database/systemfiles/userini/user.ini", "Database/SystemFiles/UserINI"),
     ("Database/SystemFiles/SystemINI/update.ini", "Database/SystemFiles/SystemINI"),
     ("DATABASE/DBFILESHF/x.hf", "Database/DBFilesHF"),
     ("Database/SystemFiles/LogsArchives/2024.zip", "Database/SystemFiles/LogsArchives"),
     ("Database/SystemFiles/Logs/update.log", "Database/SystemFiles/Logs"),
     ("Database/SystemFiles/SecuMax2/UpdateFiles/journal.json",
      "Database/SystemFiles/SecuMax2/UpdateFiles"),
     ("Database/SystemFiles/SecuMax/keys.bin", "Database/SystemFiles/SecuMax")],
)
def test_excluded_folders_case_insensitively(path: str, folder: str) -> None:
    assert excluded_dir_of(path) == folder
    assert is_excluded(path)


@pytest.mark.parametrize(
    "path",
    ["Helper/x.chm", "HelpFile.txt", "Program/Help/x.chm", "TakeItEasy.txt",
     "Database/SystemFiles/SecuMax2/other.dll", "Database/SystemFiles/LogsOld/x.log",
     "Database/SystemFiles", "Database/forms.db", "Program/opusi.exe"],
)
def test_paths_outside_the_excluded_folders(path: str) -> None:
    assert excluded_dir_of(path) is None
    assert not is_excluded(path)


def test_every_excluded_folder_is_its_own_answer() -> None:
    for folder in EXCLUDED_DIRS:
        assert excluded_dir_of(folder) == folder
        assert excluded_dir_of(folder.upper() + "/x") == folder


@pytest.mark.parametrize(
    ("first", "second"),
    [("Program/A.DLL", "program/a.dll"), ("\u00c4.txt", "A\u0308.txt"), ("\u00c4", "a\u0308"),
     ("Straße", "STRASSE")],
)
def test_fold_makes_windows_equal_names_equal(first: str, second: str) -> None:
    assert fold(first) == fold(second)


def test_fold_keeps_different_names_apart() -> None:
    assert fold("a.txt") != fold("b.txt")
    assert fold("\u00c4") == "\u00e4"
    assert fold("Program/Opus.EXE") == "program/opus.exe"


@pytest.mark.parametrize(
    "names",
    [["Program/lib", "Program/lib/x.dll"], ["Program/lib/x.dll", "Program/lib"],
     ["program/LIB", "Program/lib/x.dll"], ["a", "a/b/c/d.txt"]],
)
def test_file_and_folder_clash(names: list[str]) -> None:
    with pytest.raises(UnsafeArchiveError, match="is a file and also the folder of") as raised:
        check_member_names(names)
    assert raised.value.exit_code == 22


def test_no_clash_between_similar_names() -> None:
    names = ["Program/lib.dll", "Program/lib/x.dll", "Program/libx/y.dll"]
    assert check_member_names(names) == names
    assert check_member_names([]) == []


def test_unsafe_name_in_a_set_is_refused() -> None:
    with pytest.raises(UnsafeArchiveError, match=r"Unsafe path 'Program/COM1.txt': device name"):
        check_member_names(["Program/a.dll", "Program/COM1.txt"])
