"""Unit tests of updater.bootstrap.policy: check_policy, the vendor's rules for the update."""

from __future__ import annotations

from pathlib import Path

import pytest

from updater.bootstrap.policy import check_policy
from updater.core.errors import RefusedByPolicyError
from updater.core.install import IniSettings, Install


def install(root: Path, build: int, *, option_52: bool = True, option_53: bool = True) -> Install:
    ini = IniSettings(server_url="https://updates.example/repo", license_number="DEMO-1147",
                      proxy_url=None, keep_backups=3, host_wait_seconds=30.0,
                      option_52=option_52, option_53=option_53)
    return Install(root=root, build=build, ini=ini)


@pytest.mark.parametrize(
    ("build", "option_53", "at_startup"),
    [(1147, False, False), (1147, True, False), (1189, True, False), (1189, False, False),
     (1190, True, True), (1190, False, False), (5000, True, True), (5000, False, False)],
)
def test_allowed_combinations(tmp_path: Path, build: int, option_53: bool,
                              at_startup: bool) -> None:
    # Allowed means: no RefusedByPolicyError.
    check_policy(install(tmp_path, build, option_53=option_53), at_startup=at_startup)


@pytest.mark.parametrize(
    ("build", "option_52", "option_53", "at_startup", "text", "hint"),
    [(1200, False, True, False, "Internet update is switched off: set option Allgemein 52",
      "An administrator can switch it on in opus i or in update.ini."),
     (1200, False, True, True, "set option Allgemein 52", "can switch it on"),
     (1146, True, True, False,
      "needs build 1147 or newer; this installation has build 1146",
      "Install a current full version from the vendor first."),
     (1100, True, False, True, "needs build 1147 or newer", "full version"),
     (1200, True, False, True,
      "check for updates at program start is switched off: set option Allgemein 53",
      "An administrator can still check by hand."),
     (1189, True, True, True,
      "at program start needs build 1190 or newer; this installation has build 1189",
      "An administrator can check by hand (without --at-startup)."),
     (1189, True, False, True, "Allgemein 53", "check by hand")],
)
def test_refusals_say_what_the_admin_can_do(
    tmp_path: Path, build: int, option_52: bool, option_53: bool, at_startup: bool,
    text: str, hint: str,
) -> None:
    subject = install(tmp_path, build, option_52=option_52, option_53=option_53)
    with pytest.raises(RefusedByPolicyError) as raised:
        check_policy(subject, at_startup=at_startup)
    error = raised.value
    assert error.exit_code == 24
    assert text in error.message
    assert hint in error.hint
    assert error.hint.endswith("Nothing was changed.")
    assert str(error) == f"{error.message} {error.hint}"


def test_option_52_is_checked_before_the_build(tmp_path: Path) -> None:
    with pytest.raises(RefusedByPolicyError, match="Allgemein 52"):
        check_policy(install(tmp_path, 1000, option_52=False))


def test_minimum_builds_can_be_given(tmp_path: Path) -> None:
    check_policy(install(tmp_path, 1100), min_build=1000)
    check_policy(install(tmp_path, 1150), at_startup=True, min_build_startup=1150)
    with pytest.raises(RefusedByPolicyError, match="needs build 1300 or newer"):
        check_policy(install(tmp_path, 1200), min_build=1300)
    with pytest.raises(RefusedByPolicyError, match="program start needs build 1250 or newer"):
        check_policy(install(tmp_path, 1200), at_startup=True, min_build_startup=1250)
