"""The vendor's rules for the Internet update, as the bootstrap applies them (pure, no I/O).

Option ``[Allgemein] 52`` must be on and the install at build 1147 or newer; the check at
program start also needs option 53 and build 1190 (SPEC, "Voraussetzungen").
"""

from __future__ import annotations

from updater.core.errors import RefusedByPolicyError
from updater.core.i18n import _
from updater.core.install import Install

DEFAULT_MIN_BUILD = 1147
DEFAULT_MIN_BUILD_STARTUP = 1190


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
            _("Internet update is switched off: set option Allgemein 52 ([Allgemein] 52 = 1)."),
            hint=_("An administrator can switch it on in opus i or in update.ini. "
                   "Nothing was changed."),
        )
    if install.build < min_build:
        raise RefusedByPolicyError(
            _("The Internet update needs build {min_build} or newer; this installation has "
              "build {build}.", min_build=min_build, build=install.build),
            hint=_("Install a current full version from the vendor first. Nothing was changed."),
        )
    if not at_startup:
        return
    if not install.ini.option_53:
        raise RefusedByPolicyError(
            _("The check for updates at program start is switched off: set option Allgemein 53 "
              "([Allgemein] 53 = 1)."),
            hint=_("An administrator can still check by hand. Nothing was changed."),
        )
    if install.build < min_build_startup:
        raise RefusedByPolicyError(
            _("The check for updates at program start needs build {min_build} or newer; "
              "this installation has build {build}.", min_build=min_build_startup,
              build=install.build),
            hint=_("An administrator can check by hand (without --at-startup). Nothing was "
                   "changed."),
        )
