"""What the desk's builds and status pages show, computed (no I/O but the repository's files):
the published builds, and the two charts as shapes for the SVG the template draws.

*Licenses on each build over time*: at each of 24 even steps from the log's first request to
its last, every license seen until then counted at the newest build it fetched until
then (:mod:`updater.publisher.status`'s reading of the log), as stacked bars. *Update checks
per hour*: requests of ``timestamp.json`` (every check and every update run makes one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from updater.core.builds import BuildInfo
from updater.publisher import offer
from updater.publisher.repository import RepoState, target_file
from updater.publisher.status import Request, summarize

WIDTH, HEIGHT, LEFT, BOTTOM = 720, 240, 48, 28
#: Colours of the builds, newest first (the rest share the last).
PALETTE = ("#1f6feb", "#2da44e", "#bf8700", "#8250df", "#cf222e", "#57606a")
NO_BUILD = "#afb8c1"


@dataclass(frozen=True)
class BuildRow:
    """A published build as the builds page lists it."""

    info: BuildInfo
    package_bytes: int
    published: datetime | None
    offered_to: str


def build_rows(state: RepoState, repo: Path) -> list[BuildRow]:
    """Every published build, newest first."""
    rows = []
    for target in state.builds().values():
        info = BuildInfo.from_custom(target.custom)
        file = target_file(repo, target)
        published = (datetime.fromtimestamp(file.stat().st_mtime, UTC) if file.exists()
                     else None)
        rows.append(BuildRow(info, target.length, published, offer.describe(info.audience)))
    return sorted(rows, key=lambda r: -r.info.build)


@dataclass(frozen=True)
class Bar:
    """One rectangle of a chart, with what its tooltip says."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    """Shapes and labels of one chart; empty when the log shows nothing."""

    bars: Sequence[Bar]
    x_labels: Sequence[tuple[float, str]]
    y_labels: Sequence[tuple[float, str]]
    legend: Sequence[tuple[str, str]]  # colour, label
    width: int = WIDTH
    height: int = HEIGHT


def on_build_chart(requests: Sequence[Request], steps: int = 24) -> Chart:
    """Licenses by the newest build they fetched, at each of up to ``steps`` time steps."""
    if not requests:
        return Chart((), (), (), ())
    times = _steps(requests, steps)
    counts = [summarize(r for r in requests if r.time <= t).on_build() for t in times]
    builds = sorted({b for c in counts for b in c}, key=lambda b: -(b if b is not None else -1))
    colours = {b: (PALETTE[min(i, len(PALETTE) - 1)] if b is not None else NO_BUILD)
               for i, b in enumerate(builds)}
    top = max(sum(c.values()) for c in counts) or 1
    width, slot = _slot(len(times))
    bars = []
    for i, (when, count) in enumerate(zip(times, counts, strict=True)):
        base = float(HEIGHT - BOTTOM)
        for build in reversed(builds):  # oldest at the bottom
            n = count.get(build, 0)
            if not n:
                continue
            height = n / top * (HEIGHT - BOTTOM - 10)
            base -= height
            label = f"build {build}" if build is not None else "checks only"
            bars.append(Bar(LEFT + i * slot, base, width, height, colours[build],
                            f"{when:%Y-%m-%d %H:%M} UTC: {n} × {label}"))
    legend = [(colours[b], str(b) if b is not None else "–") for b in builds]
    return Chart(bars, _x_labels(times, slot), _y_labels(top), legend)


def checks_chart(requests: Sequence[Request]) -> Chart:
    """Requests of ``timestamp.json`` per hour over the log's last 48 hours."""
    checks = [r.time for r in requests if r.path.endswith("/metadata/timestamp.json")]
    if not checks:
        return Chart((), (), (), ())
    last = max(checks).replace(minute=0, second=0, microsecond=0)
    first = max(min(checks).replace(minute=0, second=0, microsecond=0),
                last - timedelta(hours=47))
    hours = [first + timedelta(hours=h) for h in range(int((last - first).total_seconds()
                                                            // 3600) + 1)]
    per_hour = Counter(t.replace(minute=0, second=0, microsecond=0) for t in checks)
    top = max(per_hour[h] for h in hours) or 1
    width, slot = _slot(len(hours))
    bars = [Bar(LEFT + i * slot, HEIGHT - BOTTOM - per_hour[h] / top * (HEIGHT - BOTTOM - 10),
                width, per_hour[h] / top * (HEIGHT - BOTTOM - 10), PALETTE[0],
                f"{h:%Y-%m-%d %H}:00 UTC: {per_hour[h]}")
            for i, h in enumerate(hours) if per_hour[h]]
    return Chart(bars, _x_labels(hours, slot), _y_labels(top), ())


def _steps(requests: Sequence[Request], steps: int) -> list[datetime]:
    first, last = min(r.time for r in requests), max(r.time for r in requests)
    if last == first:
        return [last]
    return [first + (last - first) * (i + 1) / steps for i in range(steps)]


def _slot(n: int) -> tuple[float, float]:
    slot = min((WIDTH - LEFT - 8) / max(n, 1), 48.0)
    return max(slot * 0.8, 1.0), slot


def _x_labels(times: Sequence[datetime], slot: float) -> list[tuple[float, str]]:
    every = max(1, len(times) // 6)
    short = (times[-1] - times[0]) <= timedelta(days=2)
    return [(LEFT + i * slot + slot * 0.4, f"{t:%H:%M}" if short else f"{t:%d.%m.}")
            for i, t in enumerate(times) if i % every == 0]


def _y_labels(top: int) -> list[tuple[float, str]]:
    marks = sorted({0, top // 2, top})
    return [(HEIGHT - BOTTOM - m / top * (HEIGHT - BOTTOM - 10), str(m)) for m in marks]
