"""The updater's window: shown when it runs without a terminal, or with ``--gui``.

:mod:`~updater.install.gui.screens` decides what is shown (pure), :mod:`~updater.install.gui.runner`
runs the update beside the window; :mod:`~updater.install.gui.taskdialog` draws it on Windows
(the system's task dialog), :mod:`~updater.install.gui.tk` elsewhere (Tk). Without a display, or
without Tk, the updater stays in text mode and says so in one line.
"""

from __future__ import annotations

import logging
import sys

from updater.install.gui.runner import Work

log = logging.getLogger(__name__)


def window_possible() -> str | None:
    """None when a window can be shown, else why not (for the one-line note)."""
    if sys.platform == "win32":  # pragma: no cover - Windows: the task dialog is always there
        return None
    try:
        from updater.install.gui.tk import display_available
    except ImportError as e:  # an interpreter without tkinter
        return f"no Tk in this program ({e})"
    if not display_available():
        return "no display (DISPLAY is not set or does not answer)"
    return None


def no_terminal() -> bool:
    """True when nobody reads a terminal: started from the desktop, the host, a service.

    Windows: also when the console is the .exe's own, i.e. Windows opened it because the
    .exe was double-clicked (:func:`updater.install.gui.taskdialog.console_owned`).
    """
    stream = sys.stdin
    if stream is None or not stream.isatty():
        return True
    if sys.platform == "win32":  # pragma: no cover - only Windows runs this
        from updater.install.gui.taskdialog import console_owned

        return console_owned()
    return False


def run_window(work: Work) -> int:
    """Run ``work`` with the window (Windows: the task dialog, its own console hidden;
    elsewhere Tk); see :func:`updater.install.gui.runner.run_in_window`."""
    from updater.install.gui.runner import run_in_window

    if sys.platform == "win32":  # pragma: no cover - only Windows runs this
        from updater.install.gui.taskdialog import TaskDialogView, console_owned, hide_console

        if console_owned():
            hide_console()
        return run_in_window(TaskDialogView(), work)
    from updater.install.gui.tk import TkView

    return run_in_window(TkView(), work)
