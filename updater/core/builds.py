"""The signed contract of a repository: what the targets metadata says about each file, as records.

Pure. The vendor's publisher writes these records into the signed targets metadata
(``custom["opusi"]`` of each target) with :meth:`BuildInfo.to_custom` and friends; the updater and
the bootstrap read them back with :func:`describe_targets`, after python-tuf verified the
signatures. One schema, one round trip: a record written is the record read.

Also here: where a target lies under consistent snapshots (:func:`hashed_path`), and the records
the client works with (:class:`RemoteFile`, :class:`RemoteBuild`, :class:`RemoteUpdater`,
:class:`RepositoryView`) and a package's header entry (:class:`Member`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from updater.core.i18n import _
from updater.core.rollout import Audience

#: The key of our records in a target's ``custom`` field.
CUSTOM_KEY = "opusi"
#: A rollout channel's name, as the vendor gives it and ``update.ini`` names it.
CHANNEL_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: Folders of a delta package: files rebuilt from the previous build's version, files whole.
DELTA_DIR, WHOLE_DIR = "delta/", "whole/"


class SchemaError(ValueError):
    """A signed record does not follow the schema (the caller decides which error that is)."""


@dataclass(frozen=True)
class BuildInfo:
    """The signed record of one build's package.

    Attributes:
        build: The build number.
        previous: The build this one was made against (None for the first build).
        deleted: Relative paths the build deletes.
        unpacked_size: Bytes of all files in the package, unpacked.
        files: Number of files in the package.
        manifest: Target name of the build's manifest (``manifests/<build>.json``).
        withdrawn: Why the vendor withdrew the build (it is then offered to no install as
            the build to end at); None while it is offered.
        audience: Who it is offered to (a staged rollout); everyone by default.
    """

    build: int
    previous: int | None
    deleted: tuple[str, ...]
    unpacked_size: int
    files: int
    manifest: str
    withdrawn: str | None = None
    audience: Audience = Audience()

    def to_custom(self) -> dict[str, Any]:
        """The target's ``custom`` field."""
        record: dict[str, Any] = {
            "kind": "build", "build": self.build, "previous": self.previous,
            "deleted": list(self.deleted), "unpacked_size": self.unpacked_size,
            "files": self.files, "manifest": self.manifest,
        }
        if self.withdrawn is not None:
            record["withdrawn"] = self.withdrawn
        if self.audience != Audience():  # signed JSON has no fractions: tenths of a percent
            permille = None if self.audience.percent is None else round(self.audience.percent * 10)
            record["rollout"] = {"permille": permille, "channels": list(self.audience.channels)}
        return {CUSTOM_KEY: record}

    @classmethod
    def from_custom(cls, custom: object) -> BuildInfo:
        """Read the record back.

        Raises:
            SchemaError: It is not a complete build record.
        """
        info = _record(custom, "build")
        deleted = info.get("deleted")
        if not isinstance(deleted, list) or not all(isinstance(p, str) for p in deleted):
            raise SchemaError("'deleted' is not a list of paths")
        previous = info.get("previous")
        return cls(
            build=_number(info, "build"),
            previous=None if previous is None else _number(info, "previous"),
            deleted=tuple(deleted),
            unpacked_size=_number(info, "unpacked_size"),
            files=_number(info, "files") if "files" in info else 0,
            manifest=_text(info, "manifest"),
            withdrawn=_text(info, "withdrawn") if "withdrawn" in info else None,
            audience=_audience(info.get("rollout")),
        )


def _audience(value: object) -> Audience:
    if value is None:
        return Audience()
    if not isinstance(value, dict):
        raise SchemaError("'rollout' is not a record")
    permille, channels = value.get("permille"), value.get("channels", [])
    if permille is not None and (isinstance(permille, bool) or not isinstance(permille, int)
                                 or not 0 <= permille <= 1000):
        raise SchemaError("'rollout.permille' is not a whole number from 0 to 1000")
    if not isinstance(channels, list) or not all(
            isinstance(c, str) and CHANNEL_PATTERN.fullmatch(c) for c in channels):
        raise SchemaError("'rollout.channels' is not a list of channel names")
    return Audience(None if permille is None else permille / 10, tuple(channels))


@dataclass(frozen=True)
class DeltaFile:
    """One file of a delta package that is a delta: the file it applies to, the one it yields."""

    base_size: int
    base_sha256: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DeltaInfo:
    """The signed record of a build's delta package, published beside its full package.

    The package holds every file the full package holds: under ``delta/`` an HDiffPatch delta
    against the file of build ``previous`` (:mod:`updater.shared.delta`), under ``whole/`` the
    file itself.

    Attributes:
        build: The build number.
        previous: The build whose files the deltas apply to (the full package's ``previous``).
        files: Relative path -> what the delta applies to and yields, for each file under
            ``delta/``.
        unpacked_size: Bytes of all members, unpacked (deltas as they are).
    """

    build: int
    previous: int
    files: tuple[tuple[str, DeltaFile], ...]
    unpacked_size: int

    def to_custom(self) -> dict[str, Any]:
        """The target's ``custom`` field."""
        files = {rel: [d.base_size, d.base_sha256, d.size, d.sha256] for rel, d in self.files}
        return {CUSTOM_KEY: {"kind": "delta", "build": self.build, "previous": self.previous,
                             "files": files, "unpacked_size": self.unpacked_size}}

    @classmethod
    def from_custom(cls, custom: object) -> DeltaInfo:
        """Read the record back.

        Raises:
            SchemaError: It is not a complete delta record.
        """
        info = _record(custom, "delta")
        files = info.get("files")
        if not isinstance(files, Mapping):
            raise SchemaError("'files' is not a mapping")
        parsed = []
        for rel, entry in sorted(files.items()):
            if not (isinstance(entry, list) and len(entry) == 4
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in entry[::2])
                    and all(isinstance(x, str) and len(x) == 64 for x in entry[1::2])):
                raise SchemaError(f"the delta entry of {rel!r} is not [size, sha256, size, sha256]")
            parsed.append((str(rel), DeltaFile(*entry)))
        return cls(build=_number(info, "build"), previous=_number(info, "previous"),
                   files=tuple(parsed), unpacked_size=_number(info, "unpacked_size"))


@dataclass(frozen=True)
class ManifestInfo:
    """The signed record of a build's manifest."""

    build: int

    def to_custom(self) -> dict[str, Any]:
        """The target's ``custom`` field."""
        return {CUSTOM_KEY: {"kind": "manifest", "build": self.build}}


@dataclass(frozen=True)
class UpdaterInfo:
    """The signed record of a frozen updater published for one platform."""

    platform: str
    version: str

    def to_custom(self) -> dict[str, Any]:
        """The target's ``custom`` field."""
        return {CUSTOM_KEY: {"kind": "updater", "platform": self.platform,
                             "version": self.version}}

    @classmethod
    def from_custom(cls, custom: object) -> UpdaterInfo:
        """Read the record back.

        Raises:
            SchemaError: It is not a complete updater record.
        """
        info = _record(custom, "updater")
        version = info.get("version", "")
        return cls(platform=_text(info, "platform"), version=str(version))


def kind_of(custom: object) -> str | None:
    """The record's kind (``"build"``, ``"manifest"``, ``"updater"``; a kind a newer publisher
    writes is returned as it is, for the caller to ignore), or None (not one of our records)."""
    info = custom.get(CUSTOM_KEY) if isinstance(custom, Mapping) else None
    kind = info.get("kind") if isinstance(info, Mapping) else None
    return kind if isinstance(kind, str) else None


def _record(custom: object, kind: str) -> Mapping[str, Any]:
    if kind_of(custom) != kind:
        raise SchemaError(f"not a {kind} record")
    assert isinstance(custom, Mapping)
    info: Mapping[str, Any] = custom[CUSTOM_KEY]
    return info


def _number(info: Mapping[str, Any], key: str) -> int:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{key!r} is missing or not a whole number")
    return value


def _text(info: Mapping[str, Any], key: str) -> str:
    value = info.get(key)
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{key!r} is missing or not a name")
    return value


def hashed_path(name: str, sha256: str) -> str:
    """Where target ``name`` lies under consistent snapshots: ``<folder>/<sha256>.<file>``."""
    folder, _slash, base = name.rpartition("/")
    return f"{folder}/{sha256}.{base}" if folder else f"{sha256}.{base}"


# --- what the client works with -----------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """A signed target: its name, where it is, how long it is, its hash."""

    name: str
    url: str
    length: int
    sha256: str


@dataclass(frozen=True)
class RemoteDelta:
    """A build's delta package as its signed metadata describes it (see :class:`DeltaInfo`)."""

    file: RemoteFile
    previous: int
    files: tuple[tuple[str, DeltaFile], ...]
    unpacked_size: int


@dataclass(frozen=True)
class RemoteBuild:
    """One published build as its signed metadata describes it."""

    build: int
    previous: int | None
    deleted: tuple[str, ...]
    unpacked_size: int
    package: RemoteFile
    manifest: RemoteFile
    delta: RemoteDelta | None = None
    withdrawn: str | None = None  # why the vendor withdrew it (BuildInfo.withdrawn)
    audience: Audience = Audience()  # who it is offered to (BuildInfo.audience)

    @property
    def fetch(self) -> RemoteFile:
        """The package to download: the delta package where it is smaller, else the full one."""
        if self.delta is not None and self.delta.file.length < self.package.length:
            return self.delta.file
        return self.package

    @property
    def fetch_unpacked(self) -> int:
        """Bytes :attr:`fetch` unpacks to."""
        if self.delta is not None and self.fetch is self.delta.file:
            return self.delta.unpacked_size
        return self.unpacked_size


@dataclass(frozen=True)
class RemoteUpdater:
    """The frozen updater published for one platform."""

    platform: str
    version: str
    file: RemoteFile


@dataclass(frozen=True)
class RepositoryView:
    """Everything the verified metadata offers, sorted by build number."""

    builds: tuple[RemoteBuild, ...]
    updaters: tuple[RemoteUpdater, ...]

    def updater_for(self, platform: str) -> RemoteUpdater | None:
        """The updater published for ``platform``, if any."""
        return next((u for u in self.updaters if u.platform == platform), None)


@dataclass(frozen=True)
class SignedTarget:
    """A target as the verified metadata lists it (the trust layer's neutral form)."""

    length: int
    sha256: str
    custom: object


def describe_targets(base_url: str, targets: Mapping[str, SignedTarget]) -> RepositoryView:
    """What verified targets metadata offers: its builds and updaters.

    Args:
        base_url: The repository's URL (``targets/`` below it).
        targets: Every target by name.

    Raises:
        SchemaError: A record of ours is incomplete, or names a manifest that is not signed.
    """
    files = {name: RemoteFile(name, f"{base_url}/targets/{hashed_path(name, t.sha256)}",
                              t.length, t.sha256) for name, t in targets.items()}
    builds, updaters, deltas = [], [], {}
    for name, target in targets.items():
        try:
            kind = kind_of(target.custom)
            if kind == "delta":
                delta = DeltaInfo.from_custom(target.custom)
                if not target.sha256:
                    raise SchemaError("it has no sha256")
                deltas[delta.build] = RemoteDelta(files[name], delta.previous, delta.files,
                                                  delta.unpacked_size)
            elif kind == "build":
                info = BuildInfo.from_custom(target.custom)
                if not (target.sha256 and info.manifest in files and files[info.manifest].sha256):
                    raise SchemaError(f"it or its manifest {info.manifest!r} has no sha256")
                builds.append(RemoteBuild(info.build, info.previous, info.deleted,
                                          info.unpacked_size, files[name], files[info.manifest],
                                          withdrawn=info.withdrawn, audience=info.audience))
            elif kind == "updater":
                updater = UpdaterInfo.from_custom(target.custom)
                if not target.sha256:
                    raise SchemaError("it has no sha256")
                updaters.append(RemoteUpdater(updater.platform, updater.version, files[name]))
        except SchemaError as e:
            raise SchemaError(_("The signed entry of {name} is incomplete ({detail}).",
                                name=name, detail=e)) from e
    # a delta package is used only where it applies to the build the full package follows
    builds = [replace(b, delta=deltas[b.build]) if b.build in deltas
              and deltas[b.build].previous == b.previous else b for b in builds]
    return RepositoryView(builds=tuple(sorted(builds, key=lambda b: b.build)),
                          updaters=tuple(updaters))


@dataclass(frozen=True)
class Member:
    """One entry of a package, as its header declares it (not yet trusted)."""

    name: str
    size: int
    is_file: bool
    is_link: bool
