"""The updater's window: shown when it runs without a terminal, or with ``--gui``.

:mod:`~updater.install.gui.screens` decides what is shown (pure), :mod:`~updater.install.gui.runner`
runs the update beside the window, :mod:`~updater.install.gui.tk` draws it with Tk. Without a
display, or without Tk, the updater stays in text mode and says so in one line.
"""

from __future__ import annotations

import logging
import sys

from updater.install.gui.runner import Work

log = logging.getLogger(__name__)


def window_possible() -> str | None:
    """None when a window can be shown, else why not (for the one-line note)."""
    try:
        from updater.install.gui.tk import display_available
    except ImportError as e:  # an interpreter without tkinter
        return f"no Tk in this program ({e})"
    if not display_available():
        return "no display (DISPLAY is not set or does not answer)"
    return None


def no_terminal() -> bool:
    """True when nobody reads a terminal: started from the desktop, the host, a service."""
    stream = sys.stdin
    return stream is None or not stream.isatty()


def run_window(work: Work) -> int:
    """Run ``work`` with the Tk window; see :func:`updater.install.gui.runner.run_in_window`."""
    from updater.install.gui.runner import run_in_window
    from updater.install.gui.tk import TkView

    return run_in_window(TkView(), work)
