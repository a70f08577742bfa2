"""A display for window tests: Debian's Xvfb on a free display number, xdotool, screenshots.

The screenshots (Pillow's ImageGrab from the X display) go to ``build/screenshots/``: the
test artifacts, and the source of the README's pictures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"


@dataclass
class Display:
    """An X display (``:N``) and the tools to act on its windows."""

    name: str

    def xdotool(self, *args: str) -> str:
        done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "DISPLAY": self.name})
        return done.stdout.strip()

    def find(self, title: str) -> str:
        """The id of the (first) window whose title matches ``title``; waits for it."""
        return self.xdotool("search", "--sync", "--name", title).split()[0]

    def key(self, window: str, key: str) -> None:
        """Press ``key`` in ``window`` (focused first; there is no window manager).

        Sent to the focused window, not with ``--window``: a key that closes its window (a
        dialog's Return) would otherwise never be released, and the display's auto-repeat
        would press it again and again in the window below.
        """
        self.xdotool("windowfocus", "--sync", window)
        self.xdotool("key", key)

    def type(self, window: str, text: str) -> None:
        """Type ``text`` into ``window`` (focused first)."""
        self.xdotool("windowfocus", "--sync", window)
        self.xdotool("type", "--delay", "10", text)

    def screenshot(self, window: str, name: str) -> Path:
        """Save ``window`` as ``build/screenshots/<name>.png``."""
        from PIL import ImageGrab

        geometry = dict(line.split("=") for line in self.xdotool(
            "getwindowgeometry", "--shell", window).splitlines())
        x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        SHOTS.mkdir(parents=True, exist_ok=True)
        image = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=self.name)
        path = SHOTS / f"{name}.png"
        image.save(path)
        assert image.getextrema() != ((0, 0), (0, 0), (0, 0)), "an empty screenshot"
        return path


@contextmanager
def xvfb() -> Iterator[Display]:
    """Start Xvfb (1024x768) on a display number it chooses; skip when it is not installed."""
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.skip("Xvfb or xdotool is not installed (apt-get install xvfb xdotool; "
                    "scripts/test does it when it may)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as handle:
        number = handle.readline().strip()
    try:
        yield Display(f":{number}")
    finally:
        server.terminate()
        server.wait(timeout=10)
