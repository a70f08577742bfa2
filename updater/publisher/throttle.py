"""Slowing down a client that guesses license numbers, in memory only.

License numbers are the only credential. A client address whose requests were refused for
their license number (errors 1, 2, 7) more than :data:`LIMIT` times within :data:`WINDOW`
seconds gets 429 with ``Retry-After`` for every request until its oldest failure is older than
the window; other clients are served as before. Addresses live only in this process's memory
(at most :data:`MAX_ADDRESSES`, the longest quiet dropped first) and are never logged or
written anywhere. Requests from this machine itself (a loopback peer that names no client:
an administrator's tools, the tests) are not counted unless ``loopback`` asks for it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Refused requests an address may make within the window. A practice's installs retry a
#: refused license a few times at most; a guessing run makes thousands.
LIMIT = 20
#: Seconds a refusal counts against its address.
WINDOW = 600.0
#: Addresses remembered at most (memory stays bounded under a spread attack).
MAX_ADDRESSES = 100_000


class FailureThrottle:
    """Refused requests per client address in a sliding window."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic, *, loopback: bool = False) -> None:
        self.limit, self.window, self._clock, self.loopback = limit, window, clock, loopback
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, address: str) -> float:
        """Seconds ``address`` must wait before it is answered again (0: answer it)."""
        if self._exempt(address):
            return 0.0
        with self._lock:
            times = self._recent(address)
            if times is None or len(times) < self.limit:
                return 0.0
            return max(0.0, times[0] + self.window - self._clock())

    def refused(self, address: str) -> None:
        """Count a request of ``address`` refused for its license number."""
        if self._exempt(address):
            return
        with self._lock:
            times = self._recent(address)
            if times is None:
                times = self._failures[address] = deque(maxlen=self.limit)
                while len(self._failures) > MAX_ADDRESSES:
                    self._failures.popitem(last=False)
            times.append(self._clock())
            self._failures.move_to_end(address)

    def _exempt(self, address: str) -> bool:
        return not self.loopback and (address.startswith("127.") or address == "::1")

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] + self.window <= self._clock():
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times
