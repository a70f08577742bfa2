"""The window on Windows: the system's own task dialog (``TaskDialogIndirect`` of comctl32).

Windows draws it in the admin's theme and language of its buttons, with a progress bar, buttons
of our own and an expandable details area, and needs nothing in the .exe but ctypes (the
interpreter that builds the .exe has no Tcl/Tk). One dialog, three pages (confirm, progress,
result), switched with ``TDM_NAVIGATE_PAGE``; a timer callback (every 200 ms) takes the run's
events from the session's queue, as the Tk window's poll does.

Windows only: confirmed under Wine (which implements the task dialog); only real Windows shows
how it looks there. :func:`console_owned` decides whether the console the .exe was given is its
own (double-clicked in Explorer: hide it, show the window) or a terminal's (keep text mode).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import sys
from collections.abc import Callable
from ctypes import wintypes
from pathlib import Path
from typing import Any

from updater.core.i18n import _, tr
from updater.install.gui.runner import Session
from updater.install.gui.screens import WINDOW_TITLE, Choose, Confirm, Progress, Result

log = logging.getLogger(__name__)

_TDF_ENABLE_HYPERLINKS = 0x0001
_TDF_ALLOW_DIALOG_CANCELLATION = 0x0008
_TDF_SHOW_PROGRESS_BAR = 0x0200
_TDF_SHOW_MARQUEE_PROGRESS_BAR = 0x0400
_TDF_CALLBACK_TIMER = 0x0800
_TDF_SIZE_TO_CONTENT = 0x01000000
_TDN_CREATED, _TDN_NAVIGATED, _TDN_BUTTON_CLICKED, _TDN_TIMER = 0, 1, 2, 4
_WM_USER = 0x0400
_TDM_NAVIGATE_PAGE = _WM_USER + 101
_TDM_SET_ELEMENT_TEXT = _WM_USER + 108
_TDM_SET_PROGRESS_BAR_STATE = _WM_USER + 104
_TDM_SET_PROGRESS_BAR_RANGE = _WM_USER + 105
_TDM_SET_PROGRESS_BAR_POS = _WM_USER + 106
_TDM_SET_PROGRESS_BAR_MARQUEE = _WM_USER + 107
_TDE_CONTENT, _TDE_EXPANDED_INFORMATION, _TDE_MAIN_INSTRUCTION = 0, 1, 2
_S_OK, _S_FALSE = 0, 1
_IDCANCEL = 2
_START, _CANCEL, _OPEN_LOG, _CLOSE, _CHOOSE = 101, 102, 103, 104, 105
_TD_ERROR_ICON = ctypes.c_void_p(0xFFFE)  # MAKEINTRESOURCE(-2)
_TD_INFORMATION_ICON = ctypes.c_void_p(0xFFFD)  # MAKEINTRESOURCE(-3)


class _Button(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("nButtonID", ctypes.c_int), ("pszButtonText", wintypes.LPCWSTR)]


# stdcall on Windows; the fallback only lets the module be imported (and type-checked) elsewhere
_Callback = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(
    ctypes.c_long, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM,
    ctypes.c_ssize_t)


class _Config(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("cbSize", wintypes.UINT), ("hwndParent", wintypes.HWND),
        ("hInstance", wintypes.HINSTANCE), ("dwFlags", ctypes.c_int),
        ("dwCommonButtons", ctypes.c_int), ("pszWindowTitle", wintypes.LPCWSTR),
        ("hMainIcon", ctypes.c_void_p), ("pszMainInstruction", wintypes.LPCWSTR),
        ("pszContent", wintypes.LPCWSTR), ("cButtons", wintypes.UINT),
        ("pButtons", ctypes.POINTER(_Button)), ("nDefaultButton", ctypes.c_int),
        ("cRadioButtons", wintypes.UINT), ("pRadioButtons", ctypes.POINTER(_Button)),
        ("nDefaultRadioButton", ctypes.c_int), ("pszVerificationText", wintypes.LPCWSTR),
        ("pszExpandedInformation", wintypes.LPCWSTR),
        ("pszExpandedControlText", wintypes.LPCWSTR),
        ("pszCollapsedControlText", wintypes.LPCWSTR), ("hFooterIcon", ctypes.c_void_p),
        ("pszFooter", wintypes.LPCWSTR), ("pfCallback", _Callback),
        ("lpCallbackData", ctypes.c_ssize_t), ("cxWidth", wintypes.UINT),
    ]  # fmt: skip


def _dll(name: str) -> Any:
    """A Windows DLL (Windows only)."""
    return getattr(ctypes, "WinDLL")(name)  # noqa: B009 - not on POSIX, where this never runs


def console_owned() -> bool:
    """True when this process's console is its own (started from Explorer), not a terminal's.

    ``GetConsoleProcessList`` counts the processes attached to the console: a one-file .exe is
    two (PyInstaller's launcher and the program), so two or fewer means nobody else, i.e. no
    terminal the admin types into.
    """
    if sys.platform != "win32":
        return False
    kernel32 = _dll("kernel32")
    processes = (wintypes.DWORD * 8)()
    count = kernel32.GetConsoleProcessList(processes, 8)
    return 0 < count <= 2


def hide_console() -> None:
    """Hide the console window Windows opened for the .exe (the dialog replaces it)."""
    if sys.platform != "win32":
        return
    window = _dll("kernel32").GetConsoleWindow()
    if window:
        _dll("user32").ShowWindow(window, 0)  # SW_HIDE


class TaskDialogView:
    """The run's window as a Windows task dialog."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self._page = ""
        self._keep: list[object] = []  # structures Windows reads while a page is shown
        self._result: Result | None = None
        self._choosing: Choose | None = None
        self._closed_by_admin = False
        self._callback = _Callback(self._on_event)
        self._user32 = _dll("user32")

    def run(self, session: Session) -> bool:
        self.session = session
        config = self._page_config(Progress(_("Preparing the update ..."), "", None))
        function = _dll("comctl32").TaskDialogIndirect
        function.argtypes = [ctypes.POINTER(_Config), ctypes.POINTER(ctypes.c_int),
                             ctypes.c_void_p, ctypes.c_void_p]
        pressed = ctypes.c_int()
        result = function(ctypes.byref(config), ctypes.byref(pressed), None, None)
        if result != _S_OK:  # no window possible after all (a service, no desktop)
            log.warning("the task dialog could not be shown (HRESULT %#x)", result & 0xFFFFFFFF)
            return False
        if not self._closed_by_admin:  # it ended without anyone closing it: no desktop
            log.warning("the task dialog ended without being closed; going on without it")
        return self._closed_by_admin

    # -- pages ------------------------------------------------------------------------------

    def _page_config(self, screen: Choose | Confirm | Progress | Result) -> _Config:
        config = _Config()
        config.cbSize = ctypes.sizeof(_Config)
        config.dwFlags = _TDF_CALLBACK_TIMER | _TDF_SIZE_TO_CONTENT
        config.pszWindowTitle = tr(WINDOW_TITLE)
        config.pfCallback = self._callback
        config.cxWidth = 300
        buttons: list[tuple[int, str]]
        if isinstance(screen, Choose):
            self._choosing = screen
            self._page = "choose" if screen.refused is None else "choose: refused"
            config.pszMainInstruction = tr(screen.heading)
            config.pszContent = "\n\n".join(tr(line) for line in screen.lines)
            buttons = [(_CHOOSE, tr(_("Choose folder ..."))), (_CANCEL, tr(_("Cancel")))]
        elif isinstance(screen, Confirm):
            self._page = "confirm"
            config.pszMainInstruction = tr(screen.heading)
            config.pszContent = "\n\n".join(tr(line) for line in screen.lines)
            buttons = [(_START, tr(_("Start update"))), (_CANCEL, tr(_("Cancel")))]
        elif isinstance(screen, Progress):
            self._page = f"progress: {screen.heading}"
            config.dwFlags |= (_TDF_SHOW_PROGRESS_BAR if screen.fraction is not None
                               else _TDF_SHOW_MARQUEE_PROGRESS_BAR)
            config.pszMainInstruction = tr(screen.heading)
            config.pszContent = tr(screen.detail) or " "
            buttons = [(_CANCEL, tr(_("Cancel")))]
        else:
            self._result = screen
            self._page = "success" if screen.ok else f"error {screen.exit_code}"
            config.dwFlags |= _TDF_ALLOW_DIALOG_CANCELLATION | _TDF_ENABLE_HYPERLINKS
            config.hMainIcon = _TD_INFORMATION_ICON if screen.ok else _TD_ERROR_ICON
            config.pszMainInstruction = tr(screen.heading)
            config.pszContent = "\n\n".join(tr(line) for line in screen.lines) or " "
            if screen.log_file:
                config.pszExpandedInformation = tr(_("Log file: {file}", file=screen.log_file))
            buttons = [(_CLOSE, tr(_("Close")))]
            if screen.log_file:
                buttons.insert(0, (_OPEN_LOG, tr(_("Open log"))))
        array = (_Button * len(buttons))(*(_Button(ident, text) for ident, text in buttons))
        config.cButtons, config.pButtons = len(buttons), array
        config.nDefaultButton = (buttons[0][0] if isinstance(screen, Choose | Confirm)
                                 else buttons[-1][0])
        self._keep = [config, array]
        log.info("window: showing %s", self._page)
        return config

    # -- events -----------------------------------------------------------------------------

    def _send(self, hwnd: int, message: int, wparam: int, lparam: object) -> None:
        self._user32.SendMessageW(wintypes.HWND(hwnd), message, wparam, lparam)

    def _on_event(self, hwnd: int, event: int, wparam: int, lparam: int, _data: int) -> int:
        try:
            if event == _TDN_TIMER:
                self._poll(hwnd)
            elif event in (_TDN_CREATED, _TDN_NAVIGATED):
                self._send(hwnd, _TDM_SET_PROGRESS_BAR_RANGE, 0, 1000 << 16)
                self._send(hwnd, _TDM_SET_PROGRESS_BAR_MARQUEE, 1, 0)
            elif event == _TDN_BUTTON_CLICKED:
                return self._clicked(hwnd, int(wparam))
        except Exception:  # an exception must not cross into Windows' code
            log.exception("task dialog callback")
        return _S_OK

    def _poll(self, hwnd: int) -> None:
        assert self.session is not None
        latest: object = None
        try:
            while True:
                event = self.session.events.get_nowait()
                if latest is not None and not isinstance(latest, Progress):
                    self._show(hwnd, latest)
                latest = event
        except queue.Empty:
            pass
        if latest is not None:
            self._show(hwnd, latest)

    def _show(self, hwnd: int, screen: object) -> None:
        if isinstance(screen, Progress) and self._page.startswith("progress") \
                and self._page == f"progress: {screen.heading}":
            if screen.fraction is not None:
                self._send(hwnd, _TDM_SET_PROGRESS_BAR_POS, int(screen.fraction * 1000), 0)
            self._set_text(hwnd, _TDE_CONTENT, tr(screen.detail) or " ")
        elif isinstance(screen, Choose | Confirm | Progress | Result):
            config = self._page_config(screen)
            self._send(hwnd, _TDM_NAVIGATE_PAGE, 0, ctypes.byref(config))

    def _offered(self, hwnd: int, folder: Path | None) -> None:
        assert self.session is not None
        self._show(hwnd, self.session.offer_folder(folder))

    def _set_text(self, hwnd: int, element: int, text: str) -> None:
        buffer = ctypes.create_unicode_buffer(text)
        self._keep.append(buffer)
        self._send(hwnd, _TDM_SET_ELEMENT_TEXT, element, buffer)

    def _clicked(self, hwnd: int, button: int) -> int:
        assert self.session is not None
        if button == _START:
            self.session.answer.put(True)
            self._show(hwnd, Progress(_("Starting ..."), "", None))
        elif button == _CHOOSE and self._choosing is not None:
            start_in = self._choosing.start_in
            folder = browse_for_folder(hwnd, tr(self._choosing.heading), start_in)
            if folder is not None:
                self._offered(hwnd, folder)
        elif button == _CANCEL or button == _IDCANCEL and self._result is None:
            if self._page.startswith("choose"):
                self._offered(hwnd, None)
            elif self._page == "confirm":
                self.session.answer.put(False)
            else:
                self.session.request_cancel()
                self._set_text(hwnd, _TDE_CONTENT, tr(_(
                    "Cancelling: the run stops at the next step; while builds are applied, "
                    "the backup is restored.")))
        elif button == _OPEN_LOG and self._result is not None and self._result.log_file:
            _open(self._result.log_file)
        elif button in (_CLOSE, _IDCANCEL):
            self._closed_by_admin = True
            return _S_OK  # closes the dialog
        return _S_FALSE  # keeps it open


def browse_for_folder(owner: int, title: str, start_in: Path | None) -> Path | None:
    """The system's folder chooser (``SHBrowseForFolderW``, with an edit box for a typed
    path), opened over ``owner`` in ``start_in``; the folder chosen, or None."""
    shell32, ole32 = _dll("shell32"), _dll("ole32")
    ole32.OleInitialize(None)  # the new-style chooser needs OLE on this thread
    start = ctypes.create_unicode_buffer(str(start_in) if start_in else "")

    def on_event(hwnd: int, message: int, _lparam: int, _data: int) -> int:
        if message == _BFFM_INITIALIZED and start.value:
            _dll("user32").SendMessageW(wintypes.HWND(hwnd), _BFFM_SETSELECTIONW, 1, start)
        return 0

    callback = _BrowseCallback(on_event)
    name = ctypes.create_unicode_buffer(260)  # MAX_PATH: the chosen item's display name
    info = _BrowseInfo()
    info.hwndOwner = owner
    info.pszDisplayName = ctypes.cast(name, wintypes.LPWSTR)
    info.lpszTitle = title
    info.ulFlags = _BIF_RETURNONLYFSDIRS | _BIF_EDITBOX | _BIF_NEWDIALOGSTYLE
    info.lpfn = callback
    shell32.SHBrowseForFolderW.restype = ctypes.c_void_p
    shell32.SHBrowseForFolderW.argtypes = [ctypes.POINTER(_BrowseInfo)]
    pidl = shell32.SHBrowseForFolderW(ctypes.byref(info))
    if not pidl:
        log.info("window: the folder chooser was cancelled")
        return None
    try:
        path = ctypes.create_unicode_buffer(32768)
        shell32.SHGetPathFromIDListEx.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p,
                                                  wintypes.DWORD, ctypes.c_int]
        if not shell32.SHGetPathFromIDListEx(pidl, path, len(path), 0):
            log.warning("the folder chosen has no file system path")
            return None
        return Path(path.value)
    finally:
        ole32.CoTaskMemFree(ctypes.c_void_p(pidl))


_BIF_RETURNONLYFSDIRS, _BIF_EDITBOX, _BIF_NEWDIALOGSTYLE = 0x0001, 0x0010, 0x0040
_BFFM_INITIALIZED, _BFFM_SETSELECTIONW = 1, _WM_USER + 103
_BrowseCallback = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(
    ctypes.c_int, wintypes.HWND, wintypes.UINT, wintypes.LPARAM, wintypes.LPARAM)


class _BrowseInfo(ctypes.Structure):
    _fields_ = [
        ("hwndOwner", wintypes.HWND), ("pidlRoot", ctypes.c_void_p),
        ("pszDisplayName", wintypes.LPWSTR), ("lpszTitle", wintypes.LPCWSTR),
        ("ulFlags", wintypes.UINT), ("lpfn", _BrowseCallback), ("lParam", wintypes.LPARAM),
        ("iImage", ctypes.c_int),
    ]  # fmt: skip


def _open(path: Path, opener: Callable[[str], object] | None = None) -> None:
    try:
        import os

        (opener or os.startfile)(str(path))  # type: ignore[attr-defined]
    except OSError as e:
        log.warning("cannot open %s: %s", path, e)
