"""The repository read from a local folder instead of the server (``--offline DIR``).

The same fetcher interface as :class:`updater.shared.transport.Fetcher`: python-tuf reads the
metadata through it and verifies it exactly as online; packages are copied and verified like
downloads (:func:`updater.shared.resume.copy_verified`). Reads only below the folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient.fetcher import FetcherInterface

from updater.core.errors import PackageVerificationError
from updater.core.i18n import _
from updater.shared import resume
from updater.shared.fsutil import iter_file


class FolderFetcher(FetcherInterface):
    """The fetcher interface over a local copy of the repository.

    URLs are ``file:`` URLs below the folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, url: str) -> Path:
        # url2pathname, not the URL's path as it is: on Windows "/C:/x" must become "C:\\x"
        path = Path(url2pathname(urlsplit(url).path)).resolve()
        if not path.is_relative_to(self.root):
            raise tuf_exceptions.DownloadHTTPError(f"{url} is outside {self.root}", 404)
        return path

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self._path(url)
        if not path.is_file():
            raise tuf_exceptions.DownloadHTTPError(f"{path} not found", 404)
        return iter_file(path)

    def download_package(self, url: str, dest: Path, *, length: int, sha256: str,
                         progress: Callable[[int], None] | None = None) -> Path:
        """Copy the file at ``url`` to ``dest`` and verify it like a download.

        Raises:
            PackageVerificationError: The file is missing or does not match.
            DiskSpaceError, FileLockedError, DiskError: The copy could not be written.
        """
        source = self._path(url)
        if not source.is_file():
            raise PackageVerificationError(
                _("The offline folder lacks {name}.", name=source.name))
        return resume.copy_verified(source, dest, url=url, length=length, sha256=sha256,
                                    progress=progress)
