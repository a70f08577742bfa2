"""The configuration step: where the install is, which build it has, how to reach the server.

Reads ``BUILD`` and ``Database/SystemFiles/SystemINI/update.ini`` of the install and the
command-line flags (which win), and returns one frozen :class:`UpdateConfig`. A missing or
malformed license number is error 1 here, before any network traffic.

``update.ini``::

    [Update]
    server = https://updates.vendor.example/opusi/
    license = 12345-ABC
    proxy = http://user:password@proxy.example:3128   ; optional; else HTTPS_PROXY etc.
    keep_backups = 3                                  ; optional
    host_wait_seconds = 120                           ; optional

    [Allgemein]
    52 = 1      ; Internet update switched on (checked by the bootstrap)
    53 = 1      ; check for updates at program start (checked by the bootstrap)
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from updater.core.errors import ConfigError, LicenseMissingError
from updater.core.i18n import _, lines
from updater.core.inifile import decode_ini, parse_update_ini
from updater.core.install import IniSettings, Install
from updater.core.paths import BUILD_FILE, CONFIG_FILE
from updater.core.protocol import license_problem
from updater.shared import installs

TRUSTED_ROOT_RESOURCE = "trusted_root.json"
log = logging.getLogger(__name__)


def read_ini(path: Path) -> IniSettings:
    """Parse ``update.ini`` as Windows reads INI files (:mod:`updater.core.inifile`); a missing
    file gives the defaults. Values where the updater does not read them are logged as warnings.

    Raises:
        ConfigError: The file exists but cannot be read or parsed.
    """
    try:
        data = path.read_bytes() if path.exists() else b""
        settings = parse_update_ini(decode_ini(data).text, str(path))
    except (OSError, ValueError) as e:
        raise ConfigError(
            _("The configuration {path} cannot be read: {e}.", path=path, e=e),
            hint=_("Fix or restore update.ini."),
        ) from e
    for warning in settings.warnings:
        log.warning("%s", warning)
    return settings


def read_install(root: Path) -> Install:
    """Read the install at ``root``: its ``BUILD`` and ``update.ini``.

    Raises:
        ConfigError: No install there, or ``BUILD`` is missing or not a number.
    """
    if not root.is_dir():
        raise ConfigError(
            _("The installation folder {root} does not exist.", root=root),
            hint=_("Pass --install-dir with the opus i program folder."),
        )
    build_file = root / BUILD_FILE
    try:
        text = build_file.read_text("ascii").strip()
    except FileNotFoundError as e:
        raise ConfigError(
            _("{root} is not an opus i installation: {file} is missing.", root=root,
              file=BUILD_FILE),
            hint=_("Pass --install-dir with the opus i program folder."),
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(_("{file} cannot be read: {e}.", file=build_file, e=e)) from e
    if not text.isdigit():
        raise ConfigError(
            _("{file} does not hold a build number (found {found!r}).", file=build_file,
              found=text[:20]),
            hint=_("Restore the file or the installation from a backup."),
        )
    return Install(root=root, build=int(text), ini=read_ini(root / CONFIG_FILE))


class InstallNotFoundError(ConfigError):
    """No install where the updater looked (error 11); ``search`` tells where it looked."""

    def __init__(self, search: installs.Search) -> None:
        super().__init__(
            _("No opus i installation was found. Looked in:\n{places}",
              places=lines(search.places())),
            hint=_("Start the updater in the opus i program folder, or pass --install-dir "
                   "with that folder."),
        )
        self.search = search


#: Asked when the search found nothing (the window's folder chooser): a folder, or None.
Chooser = Callable[[installs.Search], Path | None]


def updater_folder() -> Path:
    """Where the search starts: the frozen updater's folder, else the working directory."""
    here = Path(sys.executable if getattr(sys, "frozen", False) else Path.cwd()).resolve()
    return here.parent if here.is_file() else here


def find_install(explicit: Path | None, choose: Chooser | None = None) -> Path:
    """The install to work on: ``explicit``, else what :func:`installs.search` finds from
    the updater's folder, else what ``choose`` returns (the admin's choice in the window).

    Raises:
        InstallNotFoundError: None found or chosen (error 11), listing every place looked.
    """
    if explicit is not None:
        return explicit.resolve()
    search = installs.search(updater_folder())
    if search.found is not None:
        return search.found
    chosen = choose(search) if choose is not None else None
    if chosen is None:
        raise InstallNotFoundError(search)
    return chosen.resolve()


def license_number(flag: str | None, ini: IniSettings) -> str:
    """The license number to send: the flag, else update.ini.

    Raises:
        LicenseMissingError: None given, or malformed (error 1).
    """
    number = flag if flag is not None else ini.license_number
    problem = license_problem(number)
    if problem:
        misplaced = [w for w in ini.warnings if "'license'" in w] if flag is None else []
        raise LicenseMissingError(
            _("License problem: {problem}.", problem=problem),
            hint=misplaced[0] if misplaced else _(
                "Enter the license number in update.ini ([Update] license = ...) or pass "
                "--license. Nothing was sent to the server."),
        )
    assert number is not None
    return number


def server_url(flag: str | None, ini: IniSettings) -> str:
    """The server's base URL: the flag, else update.ini.

    Raises:
        ConfigError: None given, or not an http(s) URL.
    """
    url = flag or ini.server_url
    if not url or not url.startswith(("http://", "https://")):
        misplaced = [w for w in ini.warnings if "'server'" in w] if not flag else []
        raise ConfigError(
            _("No valid update server address is configured (found {url!r}).", url=url),
            hint=misplaced[0] if misplaced
            else _("Set [Update] server = https://... in update.ini or pass --server."),
        )
    if url.startswith("http://") and not ini.allow_http and not _is_loopback(url):
        raise ConfigError(
            _("The update server {url} is to be reached over plain http://: the license "
              "number would travel unencrypted. Nothing was sent.", url=url),
            hint=_("Use the server's https:// address. Only in a network you trust, allow "
                   "plain http:// with [Update] allow_http = 1 in update.ini."),
        )
    return url.rstrip("/")


def _is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1 or localhost): plain http:// is
    fine there (tests, a local relay)."""
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def trusted_root(path: Path | None) -> bytes:
    """The trust anchor: the root metadata built into the updater, or ``path`` for tests.

    Raises:
        ConfigError: None built in and none given, or unreadable.
    """
    try:
        if path is not None:
            return path.read_bytes()
        return importlib.resources.files("updater").joinpath(TRUSTED_ROOT_RESOURCE).read_bytes()
    except (OSError, FileNotFoundError) as e:
        raise ConfigError(
            _("No trusted root metadata: {e}.", e=e),
            hint=_("This updater was built without the vendor's root metadata; pass "
                   "--trusted-root."),
        ) from e
