"""The trust step: signed metadata from the server, verified by python-tuf's client.

The only module that uses python-tuf's client. It starts from the trusted root built into the
updater (or one given for tests), refreshes root, timestamp, snapshot and targets through our
:class:`~updater.shared.transport.Fetcher` (all checks of The Update Framework: signatures, expiry,
rollback, mix-and-match, lengths), keeps the verified metadata in a cache folder for the next
run's rollback protection, and describes what the repository offers as the records of
:mod:`updater.core.builds`.

python-tuf's exceptions become the product's errors here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from updater.core.builds import RepositoryView, SchemaError, SignedTarget, describe_targets
from updater.core.errors import (
    ConnectionFailedError,
    OpusiError,
    ServerResponseError,
    UntrustedMetadataError,
    error_from_os,
)
from updater.core.i18n import _

log = logging.getLogger(__name__)


@contextmanager
def tuf_errors() -> Iterator[None]:
    """Turn python-tuf's exceptions into the product's errors."""
    try:
        yield
    except OpusiError:
        raise
    except tuf_exceptions.ExpiredMetadataError as e:
        raise UntrustedMetadataError(
            _("The update server's signed metadata has expired ({e}).", e=e),
            hint=_("This protects against a replayed, outdated server; "
                   "please tell the vendor."),
        ) from e
    except tuf_exceptions.DownloadLengthMismatchError as e:
        raise UntrustedMetadataError(
            _("The server sent more metadata than allowed ({e}).", e=e)) from e
    except tuf_exceptions.RepositoryError as e:
        raise UntrustedMetadataError(
            _("The update server's metadata failed verification ({kind}: {e}).",
              kind=type(e).__name__, e=e),
            hint=_("The update is not trustworthy; please tell the vendor."),
        ) from e
    except tuf_exceptions.SlowRetrievalError as e:
        raise ConnectionFailedError(
            _("The update server answered too slowly ({e}).", e=e)) from e
    except tuf_exceptions.DownloadHTTPError as e:
        if e.status_code == 403:  # no license answer: a proxy or firewall refused the way
            raise ConnectionFailedError(
                _("Access to the update server was refused (HTTP 403, without the server's "
                  "license answer): {e}.", e=e),
                hint=_("If a proxy is used, check that it allows this computer to reach the "
                       "update server."),
            ) from e
        if "timestamp.json" not in str(e):  # the signed metadata names what is missing
            raise ServerResponseError(
                _("The update server lacks metadata its own signed metadata names ({e}).", e=e),
                hint=_("The server's repository is incomplete or being "
                       "tampered with; please tell the vendor."),
            ) from e
        raise ServerResponseError(
            _("The update server has no update repository at this address (HTTP {status}).",
              status=e.status_code),
            hint=_("Check the server address in update.ini."),
        ) from e
    except tuf_exceptions.DownloadError as e:
        raise ConnectionFailedError(
            _("Download from the update server failed: {e}.", e=e)) from e
    except OSError as e:
        # Translators: stands for a path in "keep the update metadata in {folder}"
        folder = e.filename or _("its folder")
        # Translators: completes "could not" (what failed, in an error message)
        raise error_from_os(e, _("keep the update metadata in {folder}", folder=folder)) from e


def read_view(
    server_url: str, cache_dir: Path, trusted_root: bytes, fetcher: FetcherInterface
) -> RepositoryView:
    """Refresh and verify the metadata; describe the builds and updaters it signs.

    Args:
        server_url: Base URL of the repository (``metadata/`` and ``targets/`` below it).
        cache_dir: Folder for the verified metadata between runs (created if missing).
        trusted_root: The root metadata built into the updater: the trust anchor.
        fetcher: The network.

    Raises:
        UntrustedMetadataError: The metadata failed any check.
        ConnectionFailedError, LicenseMissingError, LicenseRefusedError,
            RegistrationMissingError, ServerResponseError: From the network.
    """
    base = server_url.rstrip("/")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tuf_errors():
        client = Updater(
            str(cache_dir),
            f"{base}/metadata/",
            None,
            f"{base}/targets/",
            fetcher,
            UpdaterConfig(app_user_agent=None),
            bootstrap=trusted_root,
        )
        client.refresh()
        # python-tuf persists each role only after verifying it; the targets list is read back
        # from there (its public API offers lookups by name, not a listing).
        targets = Metadata.from_file(str(cache_dir / "targets.json")).signed
    if not isinstance(targets, Targets):
        raise UntrustedMetadataError(_("The cached targets metadata is not of type targets."))
    return _describe(base, targets.targets)


def _describe(base: str, targets: dict[str, TargetFile]) -> RepositoryView:
    signed = {name: SignedTarget(t.length, t.hashes.get("sha256", ""), t.custom)
              for name, t in targets.items()}
    try:
        return describe_targets(base, signed)
    except SchemaError as e:  # its message is marked for the catalog: keep it, not str(e)
        message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        raise UntrustedMetadataError(message) from e
