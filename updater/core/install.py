"""What an install says about itself: its folder, its build and its ``update.ini``, as records.

Pure: :mod:`updater.shared.config` reads them from disk; the bootstrap's rules and the updater
decide on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class IniSettings:
    """What ``update.ini`` says (every value optional there).

    ``language``: ``de`` or ``en`` when set; ``channel``: the rollout channel the vendor put
    the practice in (e.g. ``beta``; :mod:`updater.core.rollout`); ``warnings``: values found
    where the updater does not read them (see :mod:`updater.core.inifile`)."""

    server_url: str | None
    license_number: str | None
    proxy_url: str | None
    keep_backups: int
    host_wait_seconds: float
    option_52: bool
    option_53: bool
    language: str | None = None
    channel: str | None = None
    allow_http: bool = False  # plain http:// to a server other than this machine
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Install:
    """An installation on disk and the build it has."""

    root: Path
    build: int
    ini: IniSettings
