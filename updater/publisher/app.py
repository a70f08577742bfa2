"""The update server's application: answers one request for a repository's metadata or packages.

Reads ``<repo>/metadata/<file>`` and ``<repo>/targets/<path>`` (nothing else of the
repository) and the license registry (:mod:`updater.publisher.licenses`), which it checks on every
request. Writes nothing; :mod:`updater.publisher.serving` runs it as a server.

Answers through werkzeug's ``send_file``, so Range, If-Range, ETag, If-None-Match and HEAD work
and files stream from disk in constant memory. It logs one line per request and never the
client's address.

For an nginx deployment that serves the static files itself, ``GET /license-check`` answers
204 for an allowed license and the usual refusal otherwise, except that a missing or
malformed number is refused with 401 instead of 400, because ``auth_request`` passes on only
401 and 403 (nginx copies ``X-Opusi-Error`` with ``auth_request_set``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.security import safe_join
from werkzeug.utils import send_file
from werkzeug.wsgi import FileWrapper

from updater.core.errors import LicenseDatabaseError, RepositoryError
from updater.core.protocol import (
    ERROR_HEADER,
    LICENSE_HEADER,
    METADATA_PREFIX,
    TARGETS_PREFIX,
    LicenseAnswer,
    license_problem,
)
from updater.publisher.licenses import LicenseRegistry, judge, open_registry
from updater.publisher.throttle import FailureThrottle

logger = logging.getLogger(__name__)
#: One line per answered request (what ``opusi-repo status`` reads): method, path, status,
#: bytes, license number, duration. Never the client's address.
request_logger = logging.getLogger(__name__ + ".requests")

#: Seconds a client is asked to wait when the license registry cannot be reached.
REGISTRY_RETRY_AFTER = 30
#: The path nginx's ``auth_request`` asks; 204 means "serve it".
LICENSE_CHECK_PATH = "/license-check"
#: Files whose name carries their version or hash never change: clients may keep them.
LONG_MAX_AGE = 365 * 24 * 3600

#: Bytes read from a file and handed to the socket at a time. werkzeug's default of 8 KiB kept
#: one core busy at ~650 MB/s on loopback; 256 KiB blocks cost a fraction of that (8 threads
#: x 256 KiB at most in flight).
FILE_BLOCK = 256 * 1024
_ENVIRON_LICENSE = "HTTP_" + LICENSE_HEADER.upper().replace("-", "_")
_VERSIONED_METADATA = re.compile(r"[0-9]+\.[^/]+\.json")
_HASH_PREFIXED = re.compile(r"(?:[0-9a-f]{64}|[0-9a-f]{128})\.[^/]+")
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')
_ADDRESS = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"  # IPv4
    r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])"  # IPv6
)


def make_app(repo_dir: Path, registry_path: str | Path,
             throttle: FailureThrottle | None = None) -> RepositoryApp:
    """Build the WSGI application serving ``repo_dir`` to the licenses in ``registry_path``.

    Raises:
        RepositoryError: ``repo_dir`` has no ``metadata`` folder.
        LicenseDatabaseError: The registry is missing or unreadable.
    """
    if not (repo_dir / METADATA_PREFIX).is_dir():
        raise RepositoryError(
            f"{repo_dir} is not an update repository (it has no {METADATA_PREFIX}/ folder).",
            hint="Create one with 'opusi-repo init', or check the path.",
        )
    return RepositoryApp(repo_dir, open_registry(registry_path, create=False), throttle)


class RegistryOutage:
    """Logs a registry outage once when it starts, every minute while it lasts (with the number
    of requests answered 503) and once when it ends, not once per request. It ends with the
    first answer a second after the last failure: while a database shuts down, requests on
    connections it has not closed yet still work between failures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self._logged = self._failed = 0.0
        self.refused = 0

    def failed(self, error: LicenseDatabaseError) -> None:
        now = time.monotonic()
        with self._lock:
            self.refused += 1
            self._failed = now
            if self.since is None:
                self.since, self._logged = now, now
                logger.error("license registry unavailable, answering 503: %s", error)
            elif now - self._logged >= 60:
                self._logged = now
                logger.error("license registry still unavailable after %.0f s (%d requests "
                             "answered 503): %s", now - self.since, self.refused, error)

    def worked(self) -> None:
        if self.since is None:  # the usual case: no lock
            return
        now = time.monotonic()
        with self._lock:
            if self.since is not None and now - self._failed >= 1.0:
                logger.warning("license registry available again after %.1f s; %d requests "
                               "were answered 503", self._failed - self.since, self.refused)
                self.since, self.refused = None, 0


class RepositoryApp:
    """The WSGI application: license check, then a file of the repository or 404."""

    def __init__(self, repo_dir: Path, registry: LicenseRegistry,
                 throttle: FailureThrottle | None = None) -> None:
        self.repo_dir = repo_dir.resolve()
        self.registry = registry
        self.throttle = throttle or FailureThrottle()
        self.outage = RegistryOutage()

    def close(self) -> None:
        """Close the registry's connections (after the server stopped)."""
        self.registry.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request and log it when its body has been sent."""
        started = time.monotonic()
        captured: dict[str, str] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        number = environ.get(_ENVIRON_LICENSE)
        try:
            body = self._respond(environ, number)(environ, capture)
        except Exception:
            logger.exception("request failed")
            body = _plain(500, "internal server error")(environ, capture)
        return _LoggedBody(body, environ, number, captured, started)

    def _respond(self, environ: WSGIEnvironment, number: str | None) -> _WsgiApp:
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD"):
            return _plain(405, "method not allowed", [("Allow", "GET, HEAD")])
        path = _request_path(environ)
        client = _client_address(environ)
        wait = self.throttle.wait(client)
        if wait > 0:
            return _plain(429, "too many refused license numbers from this address",
                          [("Retry-After", str(int(wait) + 1))])
        try:
            answer = self._judge(number)
        except LicenseDatabaseError as e:
            self.outage.failed(e)
            return _plain(503, "license registry unavailable",
                          [("Retry-After", str(REGISTRY_RETRY_AFTER))])
        self.outage.worked()
        if answer is not None:
            self.throttle.refused(client)
        if path == LICENSE_CHECK_PATH:
            return _license_check(answer)
        if answer is not None:
            return _refusal(answer)
        return self._file(environ, path)

    def _judge(self, number: str | None) -> LicenseAnswer | None:
        known = self.registry.get(number) if number and license_problem(number) is None else None
        return judge(known, number, datetime.now(UTC).date())

    def _file(self, environ: WSGIEnvironment, path: str | None) -> _WsgiApp:
        found = self._locate(path) if path is not None else None
        if found is None:
            return _plain(404, "not found")
        file, prefix = found
        try:
            response = send_file(
                file,
                {**environ, "wsgi.file_wrapper": _file_wrapper},
                mimetype=_mimetype(file.name, prefix),
                conditional=True,
                etag=True,
                max_age=_max_age(file.name, prefix),
            )
        except RequestedRangeNotSatisfiable as e:
            return e
        except OSError:
            return _plain(404, "not found")
        response.cache_control.public = False
        response.cache_control.private = True
        return response

    def _locate(self, path: str) -> tuple[Path, str] | None:
        prefix, _, rest = path.lstrip("/").partition("/")
        if prefix not in (METADATA_PREFIX, TARGETS_PREFIX) or not rest:
            return None
        parts = rest.split("/")
        if prefix == METADATA_PREFIX and len(parts) != 1:
            return None
        if not all(_safe_name(part) for part in parts):
            return None
        root = self.repo_dir / prefix
        joined = safe_join(str(root), rest)
        if joined is None:
            return None
        file = Path(joined).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            return None
        return file, prefix


_WsgiApp = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


class _LoggedBody:
    """A response body that counts what was sent and logs the request when closed."""

    def __init__(
        self,
        body: Iterable[bytes],
        environ: WSGIEnvironment,
        number: str | None,
        captured: dict[str, str],
        started: float,
    ) -> None:
        self._body = body
        self._environ = environ
        self._number = number
        self._captured = captured
        self._started = started
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._log()

    def _log(self) -> None:
        number = self._number if license_problem(self._number) is None else "-"
        request_logger.info(
            "%s %s %s %d bytes license=%s %.1f ms",
            _printable(self._environ.get("REQUEST_METHOD", "-")),
            _printable(_request_path(self._environ) or "-"),
            self._captured.get("status", "-"),
            self._sent,
            number,
            (time.monotonic() - self._started) * 1000,
        )


def _request_path(environ: WSGIEnvironment) -> str | None:
    raw = str(environ.get("PATH_INFO", ""))
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def _safe_name(part: str) -> bool:
    """Whether one path component may be served (no dotfiles, nothing Windows would bend)."""
    return (
        part != ""
        and not part.startswith(".")
        and not part.endswith((".", " "))
        and _UNSAFE_CHARS.search(part) is None
    )


def _mimetype(name: str, prefix: str) -> str:
    if prefix == METADATA_PREFIX:
        return "application/json"
    if name.endswith(".7z"):
        return "application/x-7z-compressed"
    return "application/octet-stream"


def _max_age(name: str, prefix: str) -> int:
    """Long caching for names that change with their content, revalidation for the rest."""
    if prefix == METADATA_PREFIX:
        return LONG_MAX_AGE if _VERSIONED_METADATA.fullmatch(name) else 0
    return LONG_MAX_AGE if _HASH_PREFIXED.fullmatch(name) else 0


def _file_wrapper(file: Any, buffer_size: int = FILE_BLOCK) -> FileWrapper:
    """werkzeug's file streaming, in :data:`FILE_BLOCK` blocks whatever size it asks for."""
    return FileWrapper(file, max(buffer_size, FILE_BLOCK))


def _plain(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> _WsgiApp:
    return _static(status, "text/plain; charset=utf-8", text.encode() + b"\n", headers or [])


def _refusal(answer: LicenseAnswer, status: int | None = None,
             extra: list[tuple[str, str]] | None = None) -> _WsgiApp:
    headers = [(ERROR_HEADER, str(answer.code)), ("Cache-Control", "no-store"), *(extra or [])]
    return _static(status or answer.status, "application/json", answer.to_json(), headers)


def _client_address(environ: WSGIEnvironment) -> str:
    """The client's address, for the throttle only (never logged): the peer's, or, for a
    request from this machine (nginx in front), the address nginx names in X-Opusi-Client."""
    peer = str(environ.get("REMOTE_ADDR", ""))
    forwarded = environ.get("HTTP_X_OPUSI_CLIENT")
    if forwarded and (peer.startswith("127.") or peer == "::1"):
        return str(forwarded)
    return peer


def _license_check(answer: LicenseAnswer | None) -> _WsgiApp:
    if answer is None:
        return _static(204, None, b"", [("Cache-Control", "no-store")])
    # nginx passes only headers of an auth_request answer on: the reason and date for the body
    # it writes (deploy/nginx/opusi.conf.template)
    extra = [(name, value) for name, value in (("X-Opusi-Reason", answer.reason),
                                               ("X-Opusi-Until", answer.until)) if value]
    return _refusal(answer, 401 if answer.status == 400 else answer.status, extra)


_REASONS = {
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _static(
    status: int, content_type: str | None, body: bytes, headers: list[tuple[str, str]]
) -> _WsgiApp:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        all_headers = list(headers)
        if content_type is not None:
            all_headers.append(("Content-Type", content_type))
        all_headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS[status]}", all_headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return app


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:300]


def scrub_addresses(text: str) -> str:
    """Replace every IPv4 or IPv6 address in ``text`` with ``<address>``."""
    return _ADDRESS.sub("<address>", text)
