"""What each install is offered: withdrawing a build that turned out broken (and offering it
again).

A withdrawal is part of the build's signed record (:attr:`updater.core.builds.BuildInfo.
withdrawn`, with the vendor's reason), so clients learn it the way they learn everything else:
by verified metadata. The rules are the client's (:func:`updater.core.plan.make_plan`): a
withdrawn build is never the build an update ends at; installs below it go on to the next
build offered, passing through it, or stay where they are until the vendor publishes one (a
repair build); installs at it are offered the next build as usual. The package stays
published, so no chain is ever broken.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from updater.core.builds import CUSTOM_KEY, BuildInfo
from updater.core.errors import RepositoryError
from updater.publisher.repository import (
    ROLES,
    commit_targets,
    expiry,
    load_role_signer,
    load_state,
    locked,
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
    with locked(repo):
        state = load_state(repo)
        published = state.builds()
        if build not in published:
            raise RepositoryError(
                f"Build {build} is not published; nothing was changed.",
                hint=f"Published: {', '.join(map(str, published)) or 'none'}.")
        target = published[build]
        info = BuildInfo.from_custom(target.custom)
        changed = replace(info, withdrawn=reason.strip() if reason is not None else None)
        if changed == info:
            return info
        signers = {role: load_role_signer(repo, keys, role, state) for role in ROLES[1:]}
        targets: Metadata[Targets] = Metadata.from_bytes(state.targets.to_bytes())
        targets.signed.version += 1
        targets.signed.expires = expiry(repo, "targets")
        custom = {**target.custom, CUSTOM_KEY: changed.to_custom()[CUSTOM_KEY]}
        targets.signed.targets[target.path].unrecognized_fields["custom"] = custom
        commit_targets(repo, targets, signers,
                       snapshot_version=state.snapshot.signed.version,
                       timestamp_version=state.timestamp.signed.version)
    log.info("build %d %s", build, f"withdrawn: {reason}" if reason else "offered again")
    return changed
