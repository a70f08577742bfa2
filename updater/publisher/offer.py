"""What each install is offered: withdrawing a build that turned out broken (and offering it
again), and a staged rollout (a percentage of licenses, named channels).

A withdrawal is part of the build's signed record (:attr:`updater.core.builds.BuildInfo.
withdrawn`, with the vendor's reason), so clients learn it the way they learn everything else:
by verified metadata. The rules are the client's (:func:`updater.core.plan.make_plan`): a
withdrawn build is never the build an update ends at; installs below it go on to the next
build offered, passing through it, or stay where they are until the vendor publishes one (a
repair build); installs at it are offered the next build as usual. The package stays
published, so no chain is ever broken.

A rollout (:mod:`updater.core.rollout`) is part of the signed record the same way: the client
decides from its own license number and ``update.ini`` channel, so nothing new leaves the
machine; a license that was in stays in as the percentage grows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from updater.core.builds import CHANNEL_PATTERN, CUSTOM_KEY, BuildInfo
from updater.core.errors import RepositoryError
from updater.core.rollout import Audience
from updater.publisher.repository import (
    ROLES,
    load_role_signer,
    load_state,
    locked,
    new_targets_version,
)

log = logging.getLogger(__name__)

#: The longest reason a withdrawal may give (it travels in every client's targets metadata).
MAX_REASON = 500


def withdraw(repo: Path, keys: Path, build: int, reason: str | None) -> BuildInfo:
    """Withdraw ``build`` with ``reason``, or (``reason`` None) offer it again.

    Returns:
        The build's signed record as it is now.

    Raises:
        RepositoryError: No such build, an empty or overlong reason, or a key is missing;
            the repository is unchanged.
    """
    if reason is not None and not reason.strip():
        raise RepositoryError("A withdrawal needs a reason (--reason); nothing was changed.")
    if reason is not None and len(reason) > MAX_REASON:
        raise RepositoryError(f"The reason is longer than {MAX_REASON} characters; nothing "
                              "was changed.")
    text = reason.strip() if reason is not None else None
    info = _change(repo, keys, build, lambda info: replace(info, withdrawn=text))
    log.info("build %d %s", build, f"withdrawn: {text}" if text else "offered")
    return info


def roll_out(repo: Path, keys: Path, build: int, percent: float | None,
             channels: tuple[str, ...] = ()) -> BuildInfo:
    """Offer ``build`` to ``percent`` of the licenses (None: to everyone) and in full to the
    installs in ``channels``.

    Raises:
        RepositoryError: No such build, a percentage outside 0-100, a bad channel name, or a
            key is missing; the repository is unchanged.
    """
    if percent is not None and not 0 <= percent <= 100:
        raise RepositoryError(f"A rollout percentage is from 0 to 100, not {percent:g}; "
                              "nothing was changed.")
    for name in channels:
        if not CHANNEL_PATTERN.fullmatch(name):
            raise RepositoryError(
                f"Bad channel name {name!r}: lower-case letters, digits, '-' and '_', at most "
                "32; nothing was changed.")
    audience = Audience(None if percent is None or percent >= 100 else round(percent, 1),
                        tuple(sorted(set(channels))))
    info = _change(repo, keys, build, lambda info: replace(info, audience=audience))
    log.info("build %d offered to %s", build, describe(info.audience))
    return info


def describe(audience: Audience) -> str:
    """``everyone``, or ``10% of licenses and the channel(s) beta``."""
    if audience.everyone:
        return "everyone"
    text = f"{audience.percent:g}% of licenses"
    return text + (f" and the channel(s) {', '.join(audience.channels)}"
                   if audience.channels else "")


def _change(repo: Path, keys: Path, build: int,
            change: Callable[[BuildInfo], BuildInfo]) -> BuildInfo:
    """Apply ``change`` to the signed record of ``build``; switch it in (timestamp last)."""
    with locked(repo):
        state = load_state(repo)
        published = state.builds()
        if build not in published:
            raise RepositoryError(
                f"Build {build} is not published; nothing was changed.",
                hint=f"Published: {', '.join(map(str, published)) or 'none'}.")
        target = published[build]
        info = BuildInfo.from_custom(target.custom)
        changed = change(info)
        if changed == info:
            return info
        signers = {role: load_role_signer(repo, keys, role, state) for role in ROLES[1:]}
        custom = {**target.custom, CUSTOM_KEY: changed.to_custom()[CUSTOM_KEY]}
        with new_targets_version(repo, state, signers) as (targets, _placed):
            targets.signed.targets[target.path].unrecognized_fields["custom"] = custom
    return changed
