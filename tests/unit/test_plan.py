"""Unit tests of updater.core.plan: make_plan, check_package and check_writable_paths."""

from __future__ import annotations

from dataclasses import replace

import pytest

from updater.core.builds import Member, RemoteBuild, RemoteFile, RepositoryView
from updater.core.errors import PlanError, UnsafeArchiveError
from updater.core.plan import UpdatePlan, check_package, check_writable_paths, make_plan

BASE = "https://updates.example/repo"


def remote_build(
    number: int, previous: int | None, *, length: int = 100, unpacked: int = 1000
) -> RemoteBuild:
    package = RemoteFile(f"packages/{number}.7z", f"{BASE}/targets/packages/p.{number}.7z",
                         length, "a" * 64)
    manifest = RemoteFile(f"manifests/{number}.json", f"{BASE}/targets/manifests/m.{number}.json",
                          10, "b" * 64)
    return RemoteBuild(number, previous, (), unpacked, package, manifest)


def view(*builds: RemoteBuild) -> RepositoryView:
    return RepositoryView(builds=builds, updaters=())


CHAIN = view(
    remote_build(1147, None, length=100, unpacked=1000),
    remote_build(1150, 1147, length=20, unpacked=300),
    remote_build(1152, 1150, length=5, unpacked=40),
)


def member(name: str, size: int = 10, *, is_file: bool = True, is_link: bool = False) -> Member:
    return Member(name=name, size=size, is_file=is_file, is_link=is_link)


# --- make_plan -------------------------------------------------------------------------------


@pytest.mark.parametrize("installed", [1152, 1200])
def test_nothing_pending_gives_an_empty_plan(installed: int) -> None:
    plan = make_plan(installed, CHAIN)
    assert plan == UpdatePlan(installed=installed, builds=())
    assert plan.target == installed
    assert (plan.download_bytes, plan.unpacked_bytes) == (0, 0)


def test_empty_server_gives_an_empty_plan() -> None:
    assert make_plan(1150, view()).builds == ()


@pytest.mark.parametrize(
    ("installed", "expected", "download", "unpacked"),
    [(1147, (1150, 1152), 25, 340), (1150, (1152,), 5, 40)],
)
def test_unbroken_chain_from_the_installed_build(
    installed: int, expected: tuple[int, ...], download: int, unpacked: int
) -> None:
    plan = make_plan(installed, CHAIN)
    assert plan.installed == installed
    assert tuple(b.build for b in plan.builds) == expected
    assert plan.builds == tuple(b for b in CHAIN.builds if b.build in expected)
    assert plan.target == 1152
    assert plan.download_bytes == download
    assert plan.unpacked_bytes == unpacked


@pytest.mark.parametrize("installed", [1000, 1148, 1151])
def test_installed_build_unknown_to_the_server(installed: int) -> None:
    with pytest.raises(PlanError) as raised:
        make_plan(installed, CHAIN)
    error = raised.value
    assert f"installed build {installed} is not one the update server knows" in error.message
    assert "offers builds 1147 to 1152" in error.message
    assert "Install a current full version first" in error.message
    assert "support" in error.hint
    assert error.exit_code == 21


def test_gap_in_the_chain_names_the_builds() -> None:
    broken = view(remote_build(1147, None), remote_build(1150, 1147), remote_build(1152, 1149))
    with pytest.raises(PlanError) as raised:
        make_plan(1147, broken)
    message = raised.value.message
    assert "Build 1152 was made for build 1149, not for 1150" in message
    assert "unbroken chain" in message
    assert "not one the update server knows" not in message


def test_gap_right_after_a_known_installed_build() -> None:
    broken = view(remote_build(1147, None), remote_build(1150, 1140))
    with pytest.raises(PlanError, match="Build 1150 was made for build 1140, not for 1147"):
        make_plan(1147, broken)


def test_gap_further_along_is_found_from_an_older_install() -> None:
    broken = view(remote_build(1147, None), remote_build(1150, 1147), remote_build(1152, 1149))
    with pytest.raises(PlanError, match="Build 1152"):
        make_plan(1150, broken)


# --- withdrawn builds ------------------------------------------------------------------------

FIVE = (1147, 1148, 1150, 1152, 1155)


def chain(*withdrawn: int) -> RepositoryView:
    builds = [remote_build(n, FIVE[i - 1] if i else None) for i, n in enumerate(FIVE)]
    return view(*(replace(b, withdrawn="broken printing") if b.build in withdrawn else b
                  for b in builds))


@pytest.mark.parametrize(
    ("withdrawn", "installed", "expected", "not_offered"),
    [
        # in the middle: passed through on the way to the next build offered
        ((1150,), 1148, (1150, 1152, 1155), ()),
        ((1150,), 1147, (1148, 1150, 1152, 1155), ()),
        # at it: the builds after it as usual
        ((1150,), 1150, (1152, 1155), ()),
        # above it: nothing changes
        ((1150,), 1152, (1155,), ()),
        # the newest: installs below stay at the newest build offered
        ((1155,), 1148, (1150, 1152), (1155,)),
        ((1155,), 1152, (), (1155,)),
        ((1152, 1155), 1148, (1150,), (1152, 1155)),
        ((1152, 1155), 1152, (), (1155,)),
        # every newer build withdrawn: nothing to do, and the admin is told why
        ((1150, 1152, 1155), 1148, (), (1150, 1152, 1155)),
        # a withdrawal is taken back by publishing the record without it
        ((), 1148, (1150, 1152, 1155), ()),
    ],
)
def test_a_withdrawn_build_is_never_the_target(
        withdrawn: tuple[int, ...], installed: int, expected: tuple[int, ...],
        not_offered: tuple[int, ...]) -> None:
    plan = make_plan(installed, chain(*withdrawn))
    assert tuple(b.build for b in plan.builds) == expected
    assert plan.target == (expected[-1] if expected else installed)
    assert plan.target not in withdrawn or plan.target == installed
    assert plan.withdrawn == tuple((b, "broken printing") for b in not_offered)


def test_a_gap_behind_the_newest_offered_build_is_no_error() -> None:
    """Only a gap on the path itself leaves no valid path (error 21)."""
    builds = [*chain(1155).builds[:-1], replace(chain(1155).builds[-1], previous=1151)]
    assert tuple(b.build for b in make_plan(1148, view(*builds)).builds) == (1150, 1152)
    builds = [*chain(1152).builds[:-1], replace(chain().builds[-1], previous=1151)]
    with pytest.raises(PlanError, match="Build 1155 was made for build 1151"):
        make_plan(1148, view(*builds))


# --- check_package ---------------------------------------------------------------------------


def test_good_package_returns_the_names_in_package_order() -> None:
    members = [member("Program/z.exe", 500), member("Program/a.dll", 300),
               member("Program/Lib/b.dll", 200)]
    names = check_package(remote_build(1150, 1147, unpacked=1000), members)
    assert names == ("Program/z.exe", "Program/a.dll", "Program/Lib/b.dll")


def test_empty_package_is_accepted() -> None:
    assert check_package(remote_build(1150, 1147), []) == ()


@pytest.mark.parametrize(
    "bad",
    [member("Program/link.dll", is_link=True), member("Program", 0, is_file=False),
     member("Program/odd", is_file=False, is_link=True)],
)
def test_links_and_folder_entries_are_refused(bad: Member) -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        check_package(remote_build(1150, 1147), [member("Program/a.dll"), bad])
    assert f"Package 1150 holds {bad.name!r}" in raised.value.message
    assert "not a regular file" in raised.value.message
    assert raised.value.exit_code == 22


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../evil.dll", "leads out"), ("C:/Windows/evil.dll", "drive letter"),
     ("/etc/passwd", "absolute path"), ("Program/CON.txt", "device name 'CON'"),
     ("Program\\a.dll", "backslash")],
)
def test_unsafe_member_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(UnsafeArchiveError, match="Unsafe path") as raised:
        check_package(remote_build(1150, 1147), [member(name)])
    assert reason in raised.value.message


def test_names_differing_by_case_are_refused() -> None:
    with pytest.raises(UnsafeArchiveError, match="differ only by case"):
        check_package(remote_build(1150, 1147), [member("Program/A.dll"), member("program/a.DLL")])


@pytest.mark.parametrize(
    ("name", "folder"),
    [("Database/SystemFiles/UserINI/user.ini", "Database/SystemFiles/UserINI"),
     ("help/index.html", "Help"), ("TakeIt/x.dat", "TakeIt")],
)
def test_customer_data_paths_are_refused(name: str, folder: str) -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        check_package(remote_build(1150, 1147), [member(name)])
    assert f"in {folder}/, a customer-data folder" in raised.value.message


@pytest.mark.parametrize("name", ["BUILD", "build", "Build"])
def test_the_build_file_is_refused(name: str) -> None:
    with pytest.raises(UnsafeArchiveError, match="would write BUILD, which only the updater"):
        check_package(remote_build(1150, 1147), [member(name)])


def test_build_file_name_in_a_subfolder_is_allowed() -> None:
    assert check_package(remote_build(1150, 1147), [member("Program/BUILD")]) == ("Program/BUILD",)


def test_declared_size_above_signed_unpacked_size_is_refused() -> None:
    members = [member("a.dll", 600), member("b.dll", 401)]
    with pytest.raises(UnsafeArchiveError) as raised:
        check_package(remote_build(1150, 1147, unpacked=1000), members)
    assert raised.value.message == (
        "Package 1150 declares 1001 bytes, more than its signed unpacked size 1000."
    )


def test_declared_size_equal_to_signed_unpacked_size_passes() -> None:
    members = [member("a.dll", 600), member("b.dll", 400)]
    assert check_package(remote_build(1150, 1147, unpacked=1000), members) == ("a.dll", "b.dll")


# --- check_writable_paths --------------------------------------------------------------------


def test_writable_paths_pass() -> None:
    check_writable_paths(1150, ["Program/opusi.exe", "Database/Forms/a.frm", "Program/BUILD"])
    check_writable_paths(1150, [])


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a/../b", "Build 1150 names the unsafe path 'a/../b': leads out of the install ('..')."),
     ("", "Build 1150 names the unsafe path '': empty name."),
     ("build", "Build 1150 would write BUILD"),
     ("Database/SystemFiles/Logs/update.log",
      "Build 1150 would change 'Database/SystemFiles/Logs/update.log' in "
      "Database/SystemFiles/Logs/, a customer-data folder the update never writes.")],
)
def test_refused_writable_paths(path: str, expected: str) -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        check_writable_paths(1150, ["Program/ok.dll", path])
    assert raised.value.message.startswith(expected)
