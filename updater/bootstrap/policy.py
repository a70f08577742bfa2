"""The vendor's rules for the Internet update, as the bootstrap applies them (pure, no I/O).

Option ``[Allgemein] 52`` must be on and the install at build 1147 or newer; the check at
program start also needs option 53 and build 1190 (SPEC, "Voraussetzungen").
"""

from __future__ import annotations

from updater.core.errors import RefusedByPolicyError
from updater.core.install import Install

DEFAULT_MIN_BUILD = 1147
DEFAULT_MIN_BUILD_STARTUP = 1190
NOTHING_CHANGED = "Nothing was changed."


def check_policy(
    install: Install, *, at_startup: bool = False,
    min_build: int = DEFAULT_MIN_BUILD, min_build_startup: int = DEFAULT_MIN_BUILD_STARTUP,
) -> None:
    """Refuse what the vendor's rules forbid: option 52 off, build too old; at start-up also
    option 53 off or build below the start-up minimum.

    Raises:
        RefusedByPolicyError: A rule forbids the update (code 24).
    """
    if not install.ini.option_52:
        raise RefusedByPolicyError(
            "Internet update is switched off: set option Allgemein 52 ([Allgemein] 52 = 1).",
            hint="An administrator can switch it on in opus i or in update.ini. "
            + NOTHING_CHANGED,
        )
    if install.build < min_build:
        raise RefusedByPolicyError(
            f"The Internet update needs build {min_build} or newer; this installation has build "
            f"{install.build}.",
            hint=f"Install a current full version from the vendor first. {NOTHING_CHANGED}",
        )
    if not at_startup:
        return
    if not install.ini.option_53:
        raise RefusedByPolicyError(
            "The check for updates at program start is switched off: set option Allgemein 53 "
            "([Allgemein] 53 = 1).",
            hint=f"An administrator can still check by hand. {NOTHING_CHANGED}",
        )
    if install.build < min_build_startup:
        raise RefusedByPolicyError(
            f"The check for updates at program start needs build {min_build_startup} or newer; "
            f"this installation has build {install.build}.",
            hint=f"An administrator can check by hand (without --at-startup). {NOTHING_CHANGED}",
        )
