"""The updater with a window: the work in a worker thread, the window in the main thread.

The run itself is the same as in text mode (:func:`updater.install.run.run_update` with a
:class:`~updater.shared.progress.Reporter`); only its reporter and its question differ. The
:class:`WindowReporter` turns phases and status lines into events on a queue, which the view
polls; the confirm question waits for the admin's answer. Cancelling sets a flag that the next
progress step of the run turns into ``KeyboardInterrupt``, exactly what Ctrl+C raises: before
anything changed the run ends with nothing changed, while applying it restores the backup.
When the work ends, the window shows the result and stays until the admin closes it; then the
result (or the error, for its exit code and message) goes back to the caller.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from updater.core.i18n import Text, _
from updater.core.plan import UpdatePlan
from updater.install.gui.screens import (
    Choose,
    Confirm,
    Progress,
    ProgressTracker,
    Result,
    choose_screen,
    confirm_screen,
    error_screen,
    refusal,
    success_screen,
)
from updater.shared import installs
from updater.shared.progress import PhaseHandle, Reporter

log = logging.getLogger(__name__)

Screen = Choose | Confirm | Result
Ask = Callable[[UpdatePlan], bool]


class View(Protocol):
    """What a toolkit's window does: show a screen, and run until the admin closes it."""

    def run(self, session: Session) -> bool:
        """Run the window's loop: poll ``session`` for what to show; return when closed.

        Returns False when no window could be shown at all (the run then goes on without it).
        """


@dataclass
class Session:
    """What the worker and the window share."""

    events: queue.Queue[object]
    cancel: threading.Event
    answer: queue.Queue[bool]
    folder: queue.Queue[Path | None] = field(default_factory=queue.Queue)
    root: Path | None = None
    log_file: Path | None = None
    finished: bool = False
    places: tuple[Text, ...] = ()  # where the install search looked (the folder question)

    def offer_folder(self, folder: Path | None) -> Choose | Progress:
        """The admin's answer to the folder question (a folder, or None for cancel), and the
        screen to show next: the question again saying why the folder is refused (not an
        install: no BUILD, no update.ini), or the run going on."""
        if folder is not None:
            problem = installs.install_problem(folder)
            if problem is not None:
                log.info("window: %s refused: %s", folder, problem)
                return choose_screen(self.places, folder, refusal(folder, problem))
        log.info("window: the administrator chose %s", folder if folder else "no folder")
        self.folder.put(folder)
        return Progress(_("Preparing the update ..."), "", None)

    def request_cancel(self) -> None:
        if not self.cancel.is_set():
            log.info("window: the administrator cancelled")
            self.cancel.set()


class _WindowPhase(PhaseHandle):
    def __init__(self, reporter: WindowReporter) -> None:
        self._reporter = reporter

    def advance(self, n: int) -> None:
        self._reporter.advance(n)


class WindowReporter(Reporter):
    """Phases and status lines as events for the window; a cancel becomes KeyboardInterrupt."""

    def __init__(self, session: Session) -> None:
        super().__init__(io.StringIO())
        self.session = session
        self.tracker = ProgressTracker()
        self.lines: list[str] = []

    def phase(self, name: str, total: int, build: int | None = None,
              unit: str = "B") -> PhaseHandle:
        self._check_cancel()
        self.tracker.start(name, total, build, unit, time.monotonic())
        self.session.events.put(self.tracker.screen())
        return _WindowPhase(self)

    def advance(self, n: int) -> None:
        self._check_cancel()
        self.tracker.advance(n, time.monotonic())
        self.session.events.put(self.tracker.screen())

    def message(self, text: str) -> None:
        super().message(text)
        self.lines.append(text)

    def _check_cancel(self) -> None:
        if self.session.cancel.is_set():
            raise KeyboardInterrupt  # exactly what Ctrl+C does: restored while applying


def ask_in_window(session: Session, reporter: WindowReporter, yes: bool) -> Ask:
    """The run's confirm question, answered in the window (or at once with ``--yes``)."""

    def confirm(plan: UpdatePlan) -> bool:
        builds = [b.build for b in plan.builds]
        reporter.tracker.builds = builds
        if yes:
            return True
        session.events.put(confirm_screen(session.root or Path("."), plan.installed,
                                          plan.target, builds, plan.download_bytes))
        log.info("window: asking to start the update")
        answer = session.answer.get()
        log.info("window: the administrator %s", "started the update" if answer else "cancelled")
        return answer

    return confirm


def ask_folder_in_window(session: Session) -> Callable[[installs.Search], Path | None]:
    """The install search's last step: the admin chooses the folder in the window."""

    def choose(search: installs.Search) -> Path | None:
        session.places = tuple(search.places())
        start_in = search.choices[0] if search.choices else None
        session.events.put(choose_screen(session.places, start_in))
        log.info("window: no install found; asking for its folder")
        return session.folder.get()

    return choose


Work = Callable[[WindowReporter, Session], int]


def run_in_window(view: View, work: Work) -> int:
    """Run ``work`` in a worker thread while ``view`` shows it; return its result.

    Raises:
        BaseException: What ``work`` raised, after the window showed it and was closed.
    """
    session = Session(queue.Queue(), threading.Event(), queue.Queue())
    reporter = WindowReporter(session)
    outcome: dict[str, object] = {}

    def worker() -> None:
        try:
            outcome["code"] = work(reporter, session)
            session.events.put(success_screen(reporter.lines[-6:], session.log_file))
        except BaseException as e:  # shown in the window, then raised again in the caller
            outcome["error"] = e
            session.events.put(error_screen(e, session.log_file))
        finally:
            session.finished = True

    thread = threading.Thread(target=worker, name="update", daemon=True)
    thread.start()
    if not view.run(session):  # no window after all: the run goes on unseen, unasked
        log.warning("no window could be shown; the update goes on without one")
        session.answer.put(False)  # nobody to ask: an unapproved update does not start
        session.folder.put(None)
    elif not session.finished:  # the window was closed while the work ran: cancel and wait
        session.request_cancel()
        session.answer.put(False)
        session.folder.put(None)
    thread.join()
    error = outcome.get("error")
    if isinstance(error, BaseException):
        raise error
    code = outcome.get("code", 0)
    return code if isinstance(code, int) else 0
