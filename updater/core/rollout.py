"""Staged rollout: whether a build is offered to an install, decided from what the install
already has, so no new data leaves the machine.

The vendor publishes a build to a percentage of licenses (raised over days) and, in full, to
named channels (e.g. ``beta``, set in the practice's ``update.ini`` by the vendor's support),
both in the build's signed record. A license's place for a build is fixed: the first 8 bytes
of ``sha256("opusi-rollout:<build>:<license>")`` as a number in [0, 100). It is in while its
place is below the percentage, so raising the percentage never drops a license that was in;
each build draws its own order, so the same practices are not always the first. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def place(license_number: str, build: int) -> float:
    """The license's fixed place in [0, 100) for ``build``."""
    text = f"opusi-rollout:{build}:{license_number.strip().upper()}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


@dataclass(frozen=True)
class Audience:
    """Who a build is offered to: ``percent`` of all licenses (None: everyone) and, in full,
    the installs in one of ``channels``."""

    percent: float | None = None
    channels: tuple[str, ...] = ()

    @property
    def everyone(self) -> bool:
        return self.percent is None or self.percent >= 100

    def includes(self, build: int, license_number: str | None, channel: str | None) -> bool:
        """Whether the install with ``license_number`` and ``channel`` is offered ``build``."""
        if self.everyone or (channel is not None and channel in self.channels):
            return True
        if not license_number or self.percent is None:
            return False
        return place(license_number, build) < self.percent


@dataclass(frozen=True)
class Client:
    """What the install says about itself for a rollout: its license number and channel."""

    license_number: str | None = None
    channel: str | None = None
