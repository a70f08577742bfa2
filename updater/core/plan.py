"""The plan step: which builds to apply, in which order, and whether their paths are safe.

Pure: no I/O. Takes the verified repository description and the installed build; returns an
:class:`UpdatePlan` or refuses. Also holds the checks every package's member names and
deleted paths must pass before a byte is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from updater.core.builds import Member, RemoteBuild, RepositoryView
from updater.core.errors import PlanError, UnsafeArchiveError
from updater.core.i18n import _
from updater.core.paths import BUILD_FILE, check_member_names, excluded_dir_of, fold, path_problem
from updater.core.rollout import Client


@dataclass(frozen=True)
class UpdatePlan:
    """The builds to apply, ascending, each one's ``previous`` the one before."""

    installed: int
    builds: tuple[RemoteBuild, ...]
    #: Builds the vendor withdrew that the plan does not end at: (build, reason), ascending.
    #: (A withdrawn build before the target is passed through: the next build is made on it.)
    withdrawn: tuple[tuple[int, str], ...] = ()
    #: Newer builds in a staged rollout that does not include this install yet.
    held_back: tuple[int, ...] = ()

    @property
    def target(self) -> int:
        """The build the install has when the plan is done."""
        return self.builds[-1].build if self.builds else self.installed

    @property
    def download_bytes(self) -> int:
        """Sum of the lengths of the packages to fetch (delta packages where smaller)."""
        return sum(b.fetch.length for b in self.builds)

    @property
    def unpacked_bytes(self) -> int:
        """Sum of the packages' unpacked sizes."""
        return sum(b.unpacked_size for b in self.builds)


def make_plan(installed: int, view: RepositoryView, client: Client | None = None,
              build: int | None = None) -> UpdatePlan:
    """Every published build newer than ``installed``, as an unbroken chain from it, up to the
    newest one offered to this install, or up to ``build`` where the admin asked for it.

    A build is offered where the vendor has not withdrawn it and its rollout includes the
    install (:mod:`updater.core.rollout`, by ``client``'s license number and channel). A build
    that is not offered is never the build a plan ends at: an install below it goes on to the
    next build offered, passing through it (each build is made on the one before), or, where
    none follows yet, stays where it is. ``build`` (``--build N``, e.g. on the vendor's advice)
    ends the plan at that build whatever the rollout says, but never at a withdrawn one.

    Raises:
        PlanError: The install is older than the oldest build on the server, a build's signed
            predecessor is not the build before it (a gap nothing can bridge), or ``build`` is
            not a published build above the installed one, or withdrawn.
    """
    client = client or Client()
    newer = tuple(b for b in view.builds if b.build > installed)
    if build is not None:
        end = _asked_for(installed, build, newer)
    else:
        offered = [i for i, b in enumerate(newer) if b.withdrawn is None
                   and b.audience.includes(b.build, client.license_number, client.channel)]
        end = offered[-1] if offered else -1
    pending, later = newer[:end + 1], newer[end + 1:]
    withdrawn = tuple((b.build, b.withdrawn) for b in later if b.withdrawn is not None)
    held = tuple(b.build for b in later if b.withdrawn is None and not b.audience.includes(
        b.build, client.license_number, client.channel))
    if not pending:
        return UpdatePlan(installed=installed, builds=(), withdrawn=withdrawn, held_back=held)
    known = [b.build for b in view.builds]
    expected: int | None = installed
    for step in pending:
        if step.previous != expected:
            raise PlanError(
                _gap_message(installed, step, expected, known),
                hint=_("Please contact the vendor's support."),
            )
        expected = step.build
    return UpdatePlan(installed=installed, builds=pending, withdrawn=withdrawn, held_back=held)


def _asked_for(installed: int, build: int, newer: tuple[RemoteBuild, ...]) -> int:
    """The index of ``build`` among the ``newer`` builds; PlanError where it cannot be had."""
    numbers = [b.build for b in newer]
    if build not in numbers:
        raise PlanError(
            _("Build {build} cannot be installed: it is not a published build above the "
              "installed build {installed}.", build=build, installed=installed),
            hint=_("Builds offered above it: {builds}.",
                   builds=", ".join(map(str, numbers)) or "-"))
    asked = newer[numbers.index(build)]
    if asked.withdrawn is not None:
        raise PlanError(_("Build {build} was withdrawn by the vendor: {reason}", build=build,
                          reason=asked.withdrawn),
                        hint=_("Please contact the vendor's support."))
    return numbers.index(build)


def _gap_message(installed: int, build: RemoteBuild, expected: int | None, known: list[int]) -> str:
    if expected == installed and installed not in known:
        return _(
            "The installed build {installed} is not one the update server knows "
            "(it offers builds {first} to {last}); it cannot be updated over the "
            "Internet. Install a current full version first.",
            installed=installed, first=known[0], last=known[-1],
        )
    return _(
        "Build {build} was made for build {previous}, not for {expected}; "
        "the builds on the server do not form an unbroken chain.",
        build=build.build, previous=build.previous, expected=expected,
    )


def check_package(build: RemoteBuild, members: Sequence[Member]) -> tuple[str, ...]:
    """Check a package's header against the signed metadata before anything is extracted.

    Returns:
        The member names (files to write), in package order.

    Raises:
        UnsafeArchiveError: A link or special entry, an unsafe or colliding name, a path in a
            customer-data folder, or more data than the signed unpacked size.
    """
    for member in members:
        if member.is_link or not member.is_file:
            raise UnsafeArchiveError(
                _("Package {build} holds {name!r}, which is not "
                  "a regular file (link or folder entry).", build=build.build, name=member.name)
            )
    names = check_member_names(m.name for m in members)
    check_writable_paths(build.build, names)
    declared = sum(m.size for m in members)
    if declared > build.unpacked_size:
        raise UnsafeArchiveError(
            _("Package {build} declares {declared} bytes, more than "
              "its signed unpacked size {size}.", build=build.build, declared=declared,
              size=build.unpacked_size)
        )
    return tuple(names)


def check_writable_paths(build: int, paths: Iterable[str]) -> None:
    """Refuse any path that is unsafe or lies in a customer-data folder.

    Raises:
        UnsafeArchiveError: Such a path was found.
    """
    for path in paths:
        problem = path_problem(path)
        if problem:
            raise UnsafeArchiveError(_("Build {build} names the unsafe path {path!r}: {problem}.",
                                       build=build, path=path, problem=problem))
        if fold(path) == fold(BUILD_FILE):
            raise UnsafeArchiveError(
                _("Build {build} would write {file}, which only the "
                  "updater writes, after a build is complete.", build=build, file=BUILD_FILE)
            )
        folder = excluded_dir_of(path)
        if folder is not None:
            raise UnsafeArchiveError(
                _("Build {build} would change {path!r} in {folder}/, a customer-data folder the "
                  "update never writes.", build=build, path=path, folder=folder)
            )
