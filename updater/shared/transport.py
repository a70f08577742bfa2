"""The network: one urllib3-based fetcher for metadata (via python-tuf) and packages.

The only module that imports urllib3. Every request carries the license number (one header)
and a fixed User-Agent, nothing else about the machine. It handles proxies (explicit, or the
standard ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` variables; Basic credentials in the proxy
URL become a ``Proxy-Authorization`` header), connect retries with backoff, a read timeout, and a
minimum throughput, so a server that trickles a byte every few seconds is dropped too.

Failures become the product's errors here: the server's license answers become errors 1, 2 and 7;
anything that keeps us from talking to the server (refused, DNS, TLS, timeout, proxy) is error 6.
``404``/``403`` without a license answer stay python-tuf's ``DownloadHTTPError``, which its client
expects when it probes for a newer root.

:meth:`Fetcher.download_package` downloads a package resumably and verified, through
:mod:`updater.shared.resume`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import urllib3
from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient.fetcher import FetcherInterface
from urllib3.util import parse_url

from updater import __version__
from updater.core.errors import (
    ConnectionFailedError,
    OpusiError,
    ServerResponseError,
)
from updater.core.i18n import _
from updater.core.protocol import ERROR_HEADER, LICENSE_HEADER, error_from_answer
from updater.shared import resume

log = logging.getLogger(__name__)

USER_AGENT = f"opusi-INSTALLUpdate/{__version__}"
_CHUNK = 256 * 1024
_ERROR_BODY_LIMIT = 16 * 1024
_GATEWAY_STATUSES = {502, 503, 504}
#: urllib3 reports a refused CONNECT as "Tunnel connection failed: 407 ..." (tinyproxy: 401).
_PROXY_AUTH_REFUSED = re.compile(r"Tunnel connection failed: 40[17]\b")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class NetworkSettings:
    """How to reach the server.

    Attributes:
        license_number: Sent with every request, the only thing about the customer that is.
        proxy_url: Explicit proxy (``http://user:pass@host:port``); None: use the environment.
        use_environment: Read ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (and, on Windows,
            the system's proxy settings) when no explicit proxy is given.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for the next bytes of an answer.
        min_rate: Bytes per second an answer must average over ``rate_window`` seconds.
        rate_window: Seconds over which the throughput is measured.
        retries: Connection attempts after the first, with exponential backoff.
        backoff: Backoff factor in seconds (urllib3 2: 0.5 waits 0, 1, 2, ... before the retries).
        ca_file: Extra CA bundle for TLS (tests, in-house CAs); None: the system's.
    """

    license_number: str
    proxy_url: str | None = None
    use_environment: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    min_rate: float = 1024.0
    rate_window: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    ca_file: Path | None = None


def proxy_for(url: str, settings: NetworkSettings) -> str | None:
    """The proxy to use for ``url``: the explicit one, else the environment's, or None."""
    if settings.proxy_url:
        return settings.proxy_url
    if not settings.use_environment:
        return None
    parsed = parse_url(url)
    if parsed.host and urllib.request.proxy_bypass(parsed.host):
        return None
    return urllib.request.getproxies().get(parsed.scheme or "http")


def _proxy_manager(proxy: str, settings: NetworkSettings, **kwargs: object) -> urllib3.ProxyManager:
    parsed = parse_url(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if parsed.auth:
        # urllib3.make_headers encodes as latin-1 and fails on other characters; UTF-8 is what
        # RFC 7617 names and what curl and browsers send.
        user, _, password = parsed.auth.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        headers = {"Proxy-Authorization": f"Basic {token}"}
    clean = parsed._replace(auth=None).url
    return urllib3.ProxyManager(clean, proxy_headers=headers, **kwargs)  # type: ignore[arg-type]


class _RateGuard:
    """Raises when the bytes received over a window fall below the minimum throughput."""

    def __init__(self, min_rate: float, window: float, url: str) -> None:
        self._min_rate, self._window, self._url = min_rate, window, url
        self._start = time.monotonic()
        self._bytes = 0

    def update(self, count: int) -> None:
        self._bytes += count
        elapsed = time.monotonic() - self._start
        if elapsed < self._window:
            return
        if self._bytes / elapsed < self._min_rate:
            raise ConnectionFailedError(
                _("The server sends too slowly ({bytes} bytes in {seconds:.0f} s from {url}); "
                  "the connection was given up.", bytes=self._bytes, seconds=elapsed,
                  url=self._url),
                hint=_("Try again later; a download that was begun is resumed."),
            )
        self._start, self._bytes = time.monotonic(), 0


class Fetcher(FetcherInterface):
    """python-tuf's fetcher interface on urllib3, plus resumable package downloads."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self._managers: dict[str | None, urllib3.PoolManager] = {}

    # -- connection --------------------------------------------------------------------------

    def _manager(self, url: str) -> urllib3.PoolManager:
        proxy = proxy_for(url, self.settings)
        if proxy not in self._managers:
            kwargs: dict[str, object] = {
                "timeout": urllib3.Timeout(
                    connect=self.settings.connect_timeout, read=self.settings.read_timeout
                ),
                "retries": urllib3.Retry(
                    total=self.settings.retries,
                    connect=self.settings.retries,
                    read=0,
                    status=0,
                    # A connection closed before any answer (a proxy dropping it, urllib3's
                    # ProxyError of RemoteDisconnected) counts as neither connect nor read
                    # error: one more attempt, as a browser makes for an idempotent GET.
                    other=1,
                    redirect=3,
                    backoff_factor=self.settings.backoff,
                    raise_on_status=False,
                ),
                "maxsize": 4,
            }
            if self.settings.ca_file:
                kwargs["ca_certs"] = str(self.settings.ca_file)
            self._managers[proxy] = (
                _proxy_manager(proxy, self.settings, **kwargs)
                if proxy
                else urllib3.PoolManager(**kwargs)  # type: ignore[arg-type]
            )
        return self._managers[proxy]

    def open(self, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        """Send a GET and return the unread response of a 2xx answer.

        Raises:
            ConnectionFailedError: The server or proxy could not be reached (error 6).
            LicenseMissingError, LicenseRefusedError, RegistrationMissingError: The server
                refused the license (errors 1, 2, 7).
            tuf.api.exceptions.DownloadHTTPError: Any other error status.
        """
        sent = {
            LICENSE_HEADER: self.settings.license_number,
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        try:
            response = self._manager(url).request(
                "GET", url, headers=sent, preload_content=False, decode_content=False
            )
        except urllib3.exceptions.HTTPError as e:
            raise connection_error(e, url) from e
        if response.status < 300:
            return response
        try:
            raise _status_error(response, url, proxied=proxy_for(url, self.settings) is not None)
        finally:
            _finish(response)

    # -- python-tuf ----------------------------------------------------------------------------

    def fetch(self, url: str) -> Iterator[bytes]:
        """Like the base class, but the product's own errors pass through unwrapped."""
        try:
            return self._fetch(url)
        except (tuf_exceptions.DownloadError, OpusiError):
            raise
        except Exception as e:
            raise tuf_exceptions.DownloadError(f"Failed to download {url}") from e

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.chunks(self.open(url), url)

    def chunks(self, response: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
        """The body of ``response`` in the socket's chunks, within the throughput guard."""
        guard = _RateGuard(self.settings.min_rate, self.settings.rate_window, url)
        try:
            while True:
                try:
                    chunk = response.read1(_CHUNK)
                except urllib3.exceptions.HTTPError as e:
                    raise connection_error(e, url) from e
                if not chunk:
                    return
                guard.update(len(chunk))
                yield chunk
        finally:
            _finish(response)

    # -- packages ------------------------------------------------------------------------------

    def download_package(
        self, url: str, dest: Path, *, length: int, sha256: str, progress: Progress | None = None
    ) -> Path:
        """Download ``url`` to ``dest``, resumably: see :func:`updater.shared.resume.download`."""
        return resume.download(self, url, dest, length=length, sha256=sha256, progress=progress)


def _finish(response: urllib3.BaseHTTPResponse) -> None:
    """Give the connection back to the pool only if its answer was read to the end.

    A connection left in the middle of a body (an error, a stall, the rate guard, a length
    limit) is closed: reused, its leftover bytes would be read as the next answer.
    """
    if not response.closed and getattr(response, "length_remaining", None) != 0:
        response.close()
    response.release_conn()


def _status_error(
    response: urllib3.BaseHTTPResponse, url: str, *, proxied: bool = False
) -> Exception:
    status = response.status
    if status < 500:
        body = response.read(_ERROR_BODY_LIMIT, decode_content=False)
        license_error = error_from_answer(response.headers.get(ERROR_HEADER), body)
        if license_error is not None:
            return license_error
    # The update server never asks for credentials; through a proxy, a 401 is the proxy's
    # refusal (tinyproxy, for one, answers wrong proxy credentials with 401, not 407).
    if status == 407 or (status == 401 and proxied):
        return ConnectionFailedError(
            _("The proxy server refused the request: it requires (other) credentials."),
            hint=_PROXY_CREDENTIALS_HINT,
        )
    if status == 429:  # the server's throttle: too many refused license numbers from here
        wait = response.headers.get("Retry-After", "")
        minutes = max(1, -(-int(wait) // 60)) if wait.isdigit() else 10
        return ConnectionFailedError(
            _("The update server refuses requests from this network for about {minutes} "
              "minutes: too many wrong license numbers were sent from it.", minutes=minutes),
            hint=_("Check the license number in update.ini ([Update] license), then start the "
                   "update again later."),
        )
    if status in _GATEWAY_STATUSES:
        return ConnectionFailedError(
            _("The update server is unavailable (HTTP {status} for {url}).", status=status,
              url=url),
            hint=_("Try again later; if a proxy is used, check that it may reach the server."),
        )
    if status in (403, 404):
        return tuf_exceptions.DownloadHTTPError(f"HTTP {status} for {url}", status)
    return ServerResponseError(
        _("The update server answered HTTP {status} for {url}.", status=status, url=url))


_PROXY_CREDENTIALS_HINT = _("Check the proxy user and password in update.ini or the proxy "
                            "variables.")


def connection_error(error: Exception, url: str) -> ConnectionFailedError:
    """Describe a urllib3 failure to reach ``url`` as error 6, naming its cause."""
    reason = getattr(error, "reason", None) or error
    # Translators: completes "The update server {host} {kind}"
    kind = _("could not be reached")
    hint = _("Check the Internet connection, the server address and the proxy settings. "
             "Downloads begun are resumed next time.")
    if isinstance(reason, urllib3.exceptions.ProxyError) or isinstance(
        error, urllib3.exceptions.ProxyError
    ):
        kind = _("could not be reached through the proxy")
        if _PROXY_AUTH_REFUSED.search(str(reason)):  # an https tunnel (CONNECT) refused
            kind = _("could not be reached: the proxy server refused its credentials")
            hint = _PROXY_CREDENTIALS_HINT
    elif isinstance(reason, urllib3.exceptions.SSLError):
        kind = _("failed the TLS (https) check")
    elif isinstance(reason, urllib3.exceptions.NameResolutionError):
        kind = _("has a name that could not be resolved (DNS)")
    elif isinstance(reason, urllib3.exceptions.NewConnectionError):
        kind = _("could not be reached (no connection)")  # a subclass of ConnectTimeoutError
    elif isinstance(reason, urllib3.exceptions.TimeoutError):
        kind = _("did not answer in time")
    elif isinstance(reason, urllib3.exceptions.ProtocolError):
        kind = _("dropped the connection")
    host = parse_url(url).host
    detail = f"{type(reason).__name__}: {reason}"
    return ConnectionFailedError(
        _("The update server {host} {kind} ({detail}).", host=host, kind=kind, detail=detail),
        hint=hint,
    )
