"""The product's errors: one root, one subclass per failure kind, each with its exit code.

Every module raises these (re-raising foreign exceptions ``from e``); only the command-line
entry points turn them into exit codes and messages, through :func:`exit_code_for`.

Codes 1, 2, 6 and 7 mean what the vendor's documentation of the Internet update always said
(license problem, license problem, no connection, registration missing). The others are ours,
numbered from 10 so they never collide with the remaining numbers of the old updater.

Every error carries three texts for the user: ``message`` (what happened), ``safe`` (what was
kept safe: set by the step that knows the state of the install, usually the workflow, not by
the module that raised), and ``hint`` (what the user can do). :mod:`updater.core.report`
renders them in that order. A failed file operation becomes one of three errors through
:func:`error_from_os`, the one mapping of :class:`OSError` to the product's errors.
"""

from __future__ import annotations

import errno

from updater.core.i18n import Text, _

#: What an error says was kept safe when it ended a run before the install changed.
NOTHING_CHANGED = _("Nothing was changed.")


class OpusiError(Exception):
    """Root of every error of the product.

    Attributes:
        exit_code: The process exit code this error ends a run with.
        title: A short headline for the user ("Fehler 6" style numbers go with it); the
            titles of errors 1, 2, 6 and 7 are the vendor's own words in German.
    """

    exit_code = 70
    title: Text = _("internal error")

    def __init__(self, message: str, *, hint: str = "", safe: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.safe = safe

    def __str__(self) -> str:
        return " ".join(t for t in (self.message, self.safe, self.hint) if t)

    def keeping(self, safe: str) -> OpusiError:
        """This error, saying ``safe`` about the install unless it says something already."""
        if not self.safe:
            self.safe = safe
        return self


# --- license and server answers (the seed's numbers) -------------------------------------


class LicenseMissingError(OpusiError):
    """No license number, or one that is not well-formed (error 1)."""

    exit_code = 1
    title = _("license problem (no or malformed license number)")


class LicenseRefusedError(OpusiError):
    """The license is revoked or its update entitlement has ended (error 2)."""

    exit_code = 2
    title = _("license problem (revoked or entitlement ended)")


class ConnectionFailedError(OpusiError):
    """The server could not be reached: refused, DNS, TLS, timeout, proxy (error 6)."""

    exit_code = 6
    title = _("connection to the server failed")


class RegistrationMissingError(OpusiError):
    """The server does not know the license for the Internet update (error 7)."""

    exit_code = 7
    title = _("license holder's registration is missing")


# --- our own codes ------------------------------------------------------------------------


class UsageError(OpusiError):
    """Wrong command-line arguments."""

    exit_code = 10
    title = _("wrong arguments")


class ConfigError(OpusiError):
    """The install, its BUILD file or its update.ini is missing or unreadable."""

    exit_code = 11
    title = _("installation or configuration not found")


class UntrustedMetadataError(OpusiError):
    """Signed metadata failed verification: bad signature, expired, rolled back."""

    exit_code = 12
    title = _("update metadata not trustworthy")


class PackageVerificationError(OpusiError):
    """A downloaded file does not match its signed length or hash."""

    exit_code = 13
    title = _("downloaded package failed verification")


class DiskSpaceError(OpusiError):
    """Not enough free disk space, or the disk became full."""

    exit_code = 14
    title = _("not enough disk space")


class FileLockedError(OpusiError):
    """A file cannot be written: locked by another program, read-only, or no permission."""

    exit_code = 15
    title = _("file locked or not writable")


class DiskError(OpusiError):
    """A file operation failed otherwise: a device error, a file that vanished, a damaged file
    system, a file that does not read back as written."""

    exit_code = 25
    title = _("read or write error on the disk")


class UpdateRestoredError(OpusiError):
    """The update failed and the backup was restored: the install is as before."""

    exit_code = 16
    title = _("update failed, previous state restored")


class RestoreFailedError(OpusiError):
    """The update failed and the backup could not be restored completely."""

    exit_code = 17
    title = _("update failed and restore failed")


class AlreadyRunningError(OpusiError):
    """Another updater holds the install's lock."""

    exit_code = 18
    title = _("another update is running")


class HostStillRunningError(OpusiError):
    """The host program did not exit within the waiting time."""

    exit_code = 19
    title = _("the program to be updated did not exit")


class RemoteInstallError(OpusiError):
    """The install is reached over the network; the update belongs on the server itself."""

    exit_code = 20
    title = _("installation is on a network drive")


class PlanError(OpusiError):
    """No safe sequence of builds leads from the installed build to the newest one."""

    exit_code = 21
    title = _("no update path")


class UnsafeArchiveError(OpusiError):
    """A package holds a member that must never be written (traversal, device name, ...)."""

    exit_code = 22
    title = _("package refused as unsafe")


class ServerResponseError(OpusiError):
    """The server answered, but not as a correct update server would."""

    exit_code = 23
    title = _("unexpected answer from the server")


class RefusedByPolicyError(OpusiError):
    """The bootstrap refuses: option off, build too old, no admin approval."""

    exit_code = 24
    title = _("update not allowed here")


# --- vendor side ----------------------------------------------------------------------------


class PublishRefusedError(OpusiError):
    """A publish was refused; the repository is unchanged."""

    exit_code = 30
    title = _("publish refused")


class RepositoryError(OpusiError):
    """The vendor's repository or key folder is missing, broken or inconsistent."""

    exit_code = 31
    title = _("repository problem")


class LicenseDatabaseError(OpusiError):
    """The license registry could not be read or written."""

    exit_code = 32
    title = _("license registry problem")


INTERRUPTED_EXIT_CODE = 130

# --- the one mapping of OSError -------------------------------------------------------------

_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_LOCKED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY,
                     getattr(errno, "ETXTBSY", errno.EBUSY)})
#: Windows' own codes (``OSError.winerror``) for a file another process holds: sharing and lock
#: violation, access denied, and "the disk is full" (ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL).
_WIN_LOCKED = frozenset({5, 32, 33})
_WIN_FULL = frozenset({39, 112})


def os_error_kind(error: OSError) -> str:
    """``"full"``, ``"locked"`` (locked, read-only, no permission) or ``"other"``."""
    winerror = getattr(error, "winerror", None)
    if error.errno in _FULL or winerror in _WIN_FULL:
        return "full"
    if error.errno in _LOCKED or winerror in _WIN_LOCKED or isinstance(error, PermissionError):
        return "locked"
    return "other"


def error_from_os(error: OSError, doing: str) -> OpusiError:
    """The product's error for a failed file operation.

    Args:
        error: What the operating system raised.
        doing: What failed, to follow "could not" ("write the journal in C:/opus/..."), marked
            for the catalog where it arises (``_("write the journal {path}", path=path)``).

    Returns:
        :class:`DiskSpaceError` (14) for a full disk or quota, :class:`FileLockedError` (15) for
        a file that is locked, read-only or not permitted, :class:`DiskError` (25) otherwise.
    """
    reason = error.strerror or str(error)
    kind = os_error_kind(error)
    if kind == "full":
        # Translators: {doing} is what failed, marked where it arises ("write the download ...")
        return DiskSpaceError(_("The disk is full: could not {doing}.", doing=doing),
                              hint=_("Free some disk space and start the update again."))
    if kind == "locked":
        return FileLockedError(
            # Translators: {doing} is what failed ("write the download ..."); {reason}: the
            # operating system's words
            _("Could not {doing}: {reason}.", doing=doing, reason=reason),
            hint=_("Close opus i on every workstation and any program using its files (a virus "
                   "scanner, a backup program), check that the folder is writable (run the "
                   "update as administrator), and start the update again."))
    return DiskError(
        _("Could not {doing}: {reason}.", doing=doing, reason=reason),
        hint=_("Check the disk for errors (Windows: chkdsk) and start the update again."))


def exit_code_for(error: BaseException) -> int:
    """Return the process exit code for ``error``.

    Args:
        error: Any exception that ended a run.

    Returns:
        The documented code of an :class:`OpusiError`, 130 for an interrupt, 70 otherwise.
    """
    if isinstance(error, OpusiError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED_EXIT_CODE
    return OpusiError.exit_code


def all_error_classes() -> list[type[OpusiError]]:
    """Every error class with its own code, in code order (for the README's table)."""
    seen: dict[int, type[OpusiError]] = {}
    stack: list[type[OpusiError]] = [OpusiError]
    while stack:
        cls = stack.pop()
        seen.setdefault(cls.exit_code, cls)
        stack.extend(cls.__subclasses__())
    return [seen[code] for code in sorted(seen)]
