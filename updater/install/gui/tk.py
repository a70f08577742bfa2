"""The window drawn with Tk (tkinter, in the standard library): Linux, and Windows builds whose
interpreter has Tcl/Tk.

One window, three screens (:mod:`updater.install.gui.screens`): a heading, the lines of text, a
progress bar with its detail line, and the buttons of the screen. Keys: Return is the screen's
main button (start, close), Escape cancels (or closes at the end). Each screen shown is logged
("window: showing ..."), so the log file tells what the admin saw.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk
from tkinter import font as tkfont

from updater.core.i18n import _, tr
from updater.install.gui.runner import Session
from updater.install.gui.screens import WINDOW_TITLE, Choose, Confirm, Progress, Result

log = logging.getLogger(__name__)
WIDTH = 560
POLL_MS = 100


def display_available() -> bool:
    """True when a window can be opened (Windows always; X11 when $DISPLAY answers)."""
    if sys.platform == "win32":  # pragma: no cover - only Windows runs this
        return True
    if not os.environ.get("DISPLAY"):
        return False
    try:
        probe = tk.Tk()
    except tk.TclError:
        return False
    probe.destroy()
    return True


def open_file(path: Path) -> None:
    """Open ``path`` with the system's program for it (the log in the editor); errors logged."""
    try:
        if sys.platform == "win32":  # pragma: no cover - only Windows runs this
            os.startfile(path)  # type: ignore[attr-defined]
        else:
            subprocess.Popen(["xdg-open", str(path)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        log.warning("cannot open %s: %s", path, e)


class TkView:
    """The Tk window of one run."""

    def __init__(self) -> None:
        self.root = tk.Tk()
        self.root.title(tr(WINDOW_TITLE))
        self.root.minsize(WIDTH + 40, 300)
        self.root.resizable(True, False)
        frame = ttk.Frame(self.root, padding=20)
        frame.pack(fill="both", expand=True)
        bold = tkfont.nametofont("TkDefaultFont").copy()
        bold.configure(size=bold.cget("size") + 3, weight="bold")
        self.heading = ttk.Label(frame, font=bold, wraplength=WIDTH, justify="left")
        self.heading.pack(anchor="w")
        self.body = ttk.Label(frame, wraplength=WIDTH, justify="left")
        self.body.pack(anchor="w", pady=(12, 8), fill="x")
        self.bar = ttk.Progressbar(frame, length=WIDTH, maximum=1000)
        self.detail = ttk.Label(frame, wraplength=WIDTH, justify="left")
        self.buttons = ttk.Frame(frame)
        self.buttons.pack(side="bottom", anchor="e", pady=(16, 0))
        self.session: Session | None = None
        self._shown = ""
        self._default: tk.Widget | None = None
        self.root.bind("<Return>", lambda _event: self._press_default())
        self.root.bind("<Escape>", lambda _event: self._escape())
        self.root.protocol("WM_DELETE_WINDOW", self._escape)
        self._result: Result | None = None
        self.show(Progress(_("Preparing the update ..."), "", None, can_cancel=True))

    # -- the loop ---------------------------------------------------------------------------

    def run(self, session: Session) -> bool:
        self.session = session
        self.root.after(POLL_MS, self._poll)
        self.root.mainloop()
        return True

    def _poll(self) -> None:
        assert self.session is not None
        latest: object = None
        try:
            while True:
                event = self.session.events.get_nowait()
                if isinstance(event, Progress) and isinstance(latest, Progress):
                    latest = event  # only the newest progress is worth drawing
                    continue
                if latest is not None:
                    self.show(latest)
                latest = event
        except queue.Empty:
            pass
        if latest is not None:
            self.show(latest)
        self.root.after(POLL_MS, self._poll)

    # -- the screens ------------------------------------------------------------------------

    def show(self, screen: object) -> None:
        if isinstance(screen, Choose):
            self._choose(screen)
        elif isinstance(screen, Confirm):
            self._confirm(screen)
        elif isinstance(screen, Progress):
            self._progress(screen)
        elif isinstance(screen, Result):
            self._finished(screen)

    def _announce(self, kind: str) -> None:
        if kind != self._shown:
            self._shown = kind
            log.info("window: showing %s", kind)

    def _set_buttons(self, *buttons: tuple[str, object, bool]) -> None:
        for child in self.buttons.winfo_children():
            child.destroy()
        self._default = None
        for text, command, default in buttons:
            button = ttk.Button(self.buttons, text=text, command=command,  # type: ignore[arg-type]
                                default="active" if default else "normal")
            button.pack(side="left", padx=(8, 0))
            if default:
                self._default = button
                button.focus_set()

    def _confirm(self, screen: Confirm) -> None:
        self._announce("confirm")
        self.heading.configure(text=tr(screen.heading))
        self.body.configure(text="\n\n".join(tr(line) for line in screen.lines))
        self.bar.pack_forget()
        self.detail.pack_forget()
        self._set_buttons((tr(_("Start update")), lambda: self._answer(True), True),
                          (tr(_("Cancel")), lambda: self._answer(False), False))

    def _choose(self, screen: Choose) -> None:
        self._announce("choose" if screen.refused is None else "choose: refused")
        self.heading.configure(text=tr(screen.heading), foreground="")
        self.body.configure(text="\n\n".join(tr(line) for line in screen.lines))
        self.bar.pack_forget()
        self.detail.pack_forget()
        self._set_buttons((tr(_("Choose folder ...")), lambda: self._pick_folder(screen), True),
                          (tr(_("Cancel")), lambda: self._offer(None), False))

    def _pick_folder(self, screen: Choose) -> None:
        chosen = filedialog.askdirectory(
            parent=self.root, mustexist=True, title=tr(screen.heading),
            initialdir=str(screen.start_in) if screen.start_in else None)
        if chosen:
            self._offer(Path(chosen))

    def _offer(self, folder: Path | None) -> None:
        assert self.session is not None
        self._set_buttons()
        self.show(self.session.offer_folder(folder))

    def _progress(self, screen: Progress) -> None:
        self._announce(f"progress: {screen.heading}")
        cancelling = self.session is not None and self.session.cancel.is_set()
        self.heading.configure(text=tr(screen.heading))
        self.body.configure(text=tr(_("Cancelling: the run stops at the next step; while "
                                      "builds are applied, the backup is restored."))
                            if cancelling else "")
        if not self.bar.winfo_ismapped():
            self.bar.pack(anchor="w", before=self.buttons)
            self.detail.pack(anchor="w", pady=(6, 0), before=self.buttons)
        if screen.fraction is None:
            self.bar.configure(mode="indeterminate")
            self.bar.step(20)
        else:
            self.bar.configure(mode="determinate", value=int(screen.fraction * 1000))
        self.detail.configure(text=tr(screen.detail))
        if not cancelling and not self.buttons.winfo_children():
            self._set_buttons((tr(_("Cancel")), self._cancel, False))

    def _finished(self, screen: Result) -> None:
        self._result = screen
        self._announce("success" if screen.ok else f"error {screen.exit_code}")
        self.heading.configure(text=tr(screen.heading),
                               foreground="" if screen.ok else "#a00000")
        self.body.configure(text="\n\n".join(tr(line) for line in screen.lines))
        self.bar.pack_forget()
        self.detail.configure(text=tr(_("Log file: {file}", file=screen.log_file))
                              if screen.log_file else "")
        if screen.log_file:
            self.detail.pack(anchor="w", pady=(6, 0), before=self.buttons)
        buttons: list[tuple[str, object, bool]] = []
        if screen.log_file is not None:
            log_file = screen.log_file
            buttons.append((tr(_("Open log")), lambda: open_file(log_file), False))
        buttons.append((tr(_("Close")), self.root.destroy, True))
        self._set_buttons(*buttons)

    # -- the admin's actions ----------------------------------------------------------------

    def _answer(self, start: bool) -> None:
        assert self.session is not None
        self._set_buttons()
        self.show(Progress(_("Starting ...") if start else _("Cancelling ..."), "", None))
        self.session.answer.put(start)

    def _cancel(self) -> None:
        if self.session is not None:
            self.session.request_cancel()
            self._set_buttons()

    def _press_default(self) -> None:
        if self._default is not None:
            self._default.invoke()  # type: ignore[attr-defined]

    def _escape(self) -> None:
        if self._result is not None:
            self.root.destroy()
        elif self._shown == "confirm":
            self._answer(False)
        elif self._shown.startswith("choose"):
            self._offer(None)
        else:
            self._cancel()
