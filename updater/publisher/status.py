"""``opusi-repo status``: who is on which build, who is stuck, how a rollout progresses, read
from the server's own request log (``opusi-repo serve --request-log FILE``).

Only what the requests themselves show is used: the license number (the only thing an
install sends) and the paths it fetches. An update run fetches the manifest of every build it
applies (``targets/manifests/<sha256>.<build>.json``); after a run that did not complete, the
updater drops the manifests it downloaded (not the packages), so each new attempt at a build
shows as the manifest fetched again. So, per license:

- *newest build fetched*: the highest build whose manifest it fetched: the build its last
  update run aimed at (the build it is on if that run succeeded);
- *attempts*: the update runs (a run begins with its ``timestamp.json``, which every check
  and update fetches once) that fetched that build's manifest; two or more mean a repeated
  attempt at the same build: **stuck** while no later run aimed higher;
- *last seen*: its last request of any kind (start-up checks included).

A run that completed and a run that failed look alike until the next attempt, so a license
stuck after its first failure shows once it tries again. No address is read or kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)\S*\s.*?"
    r"(?P<method>GET|HEAD) (?P<path>\S+) (?P<status>\d{3}) \d+ bytes license=(?P<license>\S+) ")
_MANIFEST = re.compile(r"/targets/manifests/[0-9a-f]{64}\.(?P<build>\d+)\.json$")


@dataclass(frozen=True)
class Request:
    """One answered request, as the request log names it."""

    time: datetime
    license: str
    path: str
    status: int


@dataclass
class LicenseView:
    """What the log says about one license."""

    license: str
    last_seen: datetime
    newest: int | None = None  # the highest build whose manifest it fetched
    attempts: int = 0  # update runs that fetched that build's manifest
    runs: int = 0

    @property
    def stuck(self) -> bool:
        return self.attempts >= 2


@dataclass
class Status:
    """The report: each license, and per build the licenses whose newest build it is."""

    licenses: dict[str, LicenseView] = field(default_factory=dict)

    def on_build(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for view in self.licenses.values():
            counts[view.newest] = counts.get(view.newest, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)))

    def stuck(self) -> list[LicenseView]:
        return sorted((v for v in self.licenses.values() if v.stuck),
                      key=lambda v: (-v.attempts, v.license))


def read_requests(lines: Iterable[str]) -> list[Request]:
    """The successful requests with a license number in the log's lines (others are skipped)."""
    found = []
    for line in lines:
        match = _LINE.search(line)
        if not match or match["license"] == "-" or not match["status"].startswith("2"):
            continue
        found.append(Request(datetime.fromisoformat(match["time"].replace("T", " ")),
                             match["license"], match["path"], int(match["status"])))
    return found


def summarize(requests: Iterable[Request]) -> Status:
    """Fold the requests, per license in time order, into runs and attempts."""
    status = Status()
    aimed: dict[str, int | None] = {}  # the build the license's current run aims at
    for request in sorted(requests, key=lambda r: (r.license, r.time)):
        view = status.licenses.setdefault(request.license,
                                          LicenseView(request.license, request.time))
        if request.license not in aimed or request.path.endswith("/metadata/timestamp.json"):
            view.runs += 1
            aimed[request.license] = None
        view.last_seen = request.time
        match = _MANIFEST.search(request.path)
        if match is None:
            continue
        build = int(match["build"])
        if aimed[request.license] is not None and build <= (aimed[request.license] or 0):
            continue  # one run fetches the manifests of several builds: counted once
        aimed[request.license] = build
        if view.newest == build:
            view.attempts += 1
        elif view.newest is None or build > view.newest:
            view.newest, view.attempts = build, 1
    return status


def rollout(status: Status, offered: dict[int, str]) -> dict[int, tuple[str, int]]:
    """For each build not offered to everyone: to whom, and how many licenses fetched it (or a
    later build)."""
    return {build: (audience, sum(1 for v in status.licenses.values()
                                  if v.newest is not None and v.newest >= build))
            for build, audience in offered.items() if audience != "everyone"}


def as_json(status: Status, offered: dict[int, str]) -> dict[str, object]:
    """The report for ``--json``."""
    return {
        "licenses": [{"license": v.license, "newest_build": v.newest, "attempts": v.attempts,
                      "runs": v.runs, "stuck": v.stuck, "last_seen": v.last_seen.isoformat()}
                     for v in sorted(status.licenses.values(), key=lambda v: v.license)],
        "on_build": [{"build": b, "licenses": n} for b, n in status.on_build().items()],
        "stuck": [v.license for v in status.stuck()],
        "rollout": [{"build": b, "offered_to": a, "fetched_by": n}
                    for b, (a, n) in rollout(status, offered).items()],
    }
