"""What the window shows, decided without a toolkit: the screens and their texts (pure).

The window has three screens: *confirm* (the install, its build, the pending builds and the
download size, what will happen, "Update starten" / "Abbrechen"), *progress* (the phase, a bar,
for downloads the speed and time left, for applying "Build 1150 (2 von 4)", "Abbrechen"), and
*result* (success with from, to, time and the backup's name, or the error with its number and
title, what happened, what was kept safe, what the admin can do, and the log file); before
them, *choose* when no install was found (where the updater looked, a folder chooser). The
views (:mod:`updater.install.gui.tk`, and on Windows the task dialog) only draw these records;
the texts are :class:`~updater.core.i18n.Text`, translated when drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from updater.core.errors import OpusiError, exit_code_for
from updater.core.i18n import Text, _, lines

#: The phases' headlines, by the name the updater's reporter gives them.
PHASES: dict[str, Text] = {
    "download": _("Downloading the builds"),
    "prepare": _("Preparing the builds"),
    "backup": _("Making the backup"),
    "apply": _("Applying the builds"),
    "restore": _("Restoring the backup"),
}
WINDOW_TITLE = _("opus i Internet update")
#: The text mode's last line (install/cli.py); the window shows the log file on its own line.
_LOG_LINE = "Log: {file}"


@dataclass(frozen=True)
class Confirm:
    """Before anything changes: what will happen; the admin starts or cancels."""

    heading: Text
    lines: tuple[Text, ...]


@dataclass(frozen=True)
class Choose:
    """No install found: where the updater looked; the admin chooses the program folder."""

    heading: Text
    lines: tuple[Text, ...]
    start_in: Path | None = None  # where the folder chooser opens
    refused: Text | None = None  # why the folder chosen last is not an install (in lines too)


@dataclass(frozen=True)
class Progress:
    """A phase under way."""

    heading: Text
    detail: Text | str
    fraction: float | None  # 0..1, None when the total is unknown
    can_cancel: bool = True


@dataclass(frozen=True)
class Result:
    """The end: success or the error; the window stays until the admin closes it."""

    ok: bool
    heading: Text
    lines: tuple[str, ...]
    log_file: Path | None = None
    exit_code: int = 0


@dataclass
class ProgressTracker:
    """Turns the reporter's phase events into :class:`Progress` screens (speed, time left,
    "Build 1150 (2 von 4)")."""

    builds: Sequence[int] = ()
    phase: str = ""
    build: int | None = None
    unit: str = "B"
    total: int = 0
    done: int = 0
    started: float = 0.0
    _samples: list[tuple[float, int]] = field(default_factory=list)

    def start(self, name: str, total: int, build: int | None, unit: str, now: float) -> None:
        self.phase, self.total, self.build, self.unit = name, total, build, unit
        self.done, self.started, self._samples = 0, now, [(now, 0)]

    def advance(self, n: int, now: float) -> None:
        self.done += n
        self._samples.append((now, self.done))
        self._samples = [s for s in self._samples if now - s[0] <= 5.0] or [(now, self.done)]

    def screen(self) -> Progress:
        heading = PHASES.get(self.phase, Text(self.phase))
        fraction = min(1.0, self.done / self.total) if self.total else None
        return Progress(heading, self._detail(), fraction)

    def _detail(self) -> Text | str:
        if self.phase == "download" and self.unit == "B":
            rate = self._rate()
            if rate and self.total:
                left = max(0.0, (self.total - self.done) / rate)
                return _("{done:.1f} of {total:.1f} MB, {rate:.1f} MB/s, about {left} left",
                         done=self.done / 1e6, total=self.total / 1e6, rate=rate / 1e6,
                         left=duration(left))
            return _("{done:.1f} of {total:.1f} MB", done=self.done / 1e6,
                     total=self.total / 1e6)
        if self.phase == "apply" and self.build is not None:
            if self.build in self.builds:
                return _("Build {build} ({index} of {count})", build=self.build,
                         index=list(self.builds).index(self.build) + 1, count=len(self.builds))
            return _("Build {build}", build=self.build)
        if self.phase == "backup" and self.build is not None:
            return _("Backup of build {build}", build=self.build)
        return ""

    def _rate(self) -> float | None:
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 - t0 >= 0.5 and d1 > d0 else None


def duration(seconds: float) -> Text:
    """A short, rounded duration: "5 s", "2 min"."""
    if seconds < 90:
        return _("{seconds} s", seconds=max(1, round(seconds)))
    return _("{minutes} min", minutes=round(seconds / 60))


def size(n: int) -> Text:
    """A download's size for the admin: "3.2 MB", or "420 kB" below a megabyte."""
    if n >= 1_000_000:
        return _("{mb:.1f} MB", mb=n / 1e6)
    return _("{kb} kB", kb=max(1, round(n / 1e3)) if n else 0)


def confirm_screen(root: Path, installed: int, target: int, builds: Sequence[int],
                   download_bytes: int) -> Confirm:
    """The question before an update."""
    return Confirm(
        _("Update opus i from build {installed} to {target}?", installed=installed,
          target=target),
        (
            _("Installation: {root}", root=root),
            _("Builds to apply: {builds}", builds=", ".join(map(str, builds))),
            _("To download: {size}", size=size(download_bytes)),
            _("First a backup of the program files is made (the data folders are left as they "
              "are). If anything fails, the backup is restored."),
            _("Close opus i on every workstation before you start."),
        ),
    )


def choose_screen(places: Sequence[Text], start_in: Path | None,
                  refused: Text | None = None) -> Choose:
    """The question when no install was found: the places looked at, and a folder chooser."""
    return Choose(
        _("Where is opus i installed?"),
        (
            _("No opus i installation was found. Looked in:"),
            lines(places),
            _("Choose the opus i program folder (the folder with the file BUILD and the folder "
              "Database)."),
            *((refused,) if refused is not None else ()),
        ),
        start_in,
        refused,
    )


def refusal(folder: Path, reason: Text) -> Text:
    """Why a chosen folder is refused."""
    return _("{folder} is not an opus i installation: {reason}.", folder=folder, reason=reason)


def success_screen(lines: Sequence[str], log_file: Path | None) -> Result:
    """The end of a run that succeeded (or found nothing to do)."""
    shown = tuple(line for line in lines  # the log file has a line of its own below
                  if getattr(line, "msgid", None) != _LOG_LINE)
    return Result(True, _("Finished"), shown, log_file, 0)


def error_screen(error: BaseException, log_file: Path | None) -> Result:
    """The end of a run that failed: number and title, what happened, what was kept safe,
    what the admin can do."""
    code = exit_code_for(error)
    if isinstance(error, OpusiError):
        heading = _("Error {code}: {title}", code=code, title=error.title)
        lines = tuple(t for t in (error.message, error.safe, error.hint) if t)
    elif isinstance(error, KeyboardInterrupt):
        heading = _("Error {code}: interrupted.", code=code)
        lines = ()
    else:
        heading = _("Error {code}: {title}", code=code, title=OpusiError.title)
        lines = (_("Please send the log file to the vendor's support."),)
    return Result(False, heading, lines, log_file, code)
