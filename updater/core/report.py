"""The report step: the one place where an exception becomes an exit code and a message.

Every command-line entry point (``opusi-repo``, ``opusi-update``, ``opusi-INSTALLUpdate``)
runs its work through :func:`run_command`. Nothing else in the package prints an error or
calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from updater.core import i18n
from updater.core.errors import OpusiError, UsageError, exit_code_for
from updater.core.i18n import _, tr

log = logging.getLogger(__name__)


# argparse marks its own words for gettext ("usage: ", "options", its errors) and looks them
# up with the module-level gettext functions it imported; ours know the language in use and
# the catalog holding the German for them (build_spec/catalogs.py extracts them).
argparse._ = i18n.translate  # type: ignore[attr-defined]
argparse.ngettext = i18n.translate_plural  # type: ignore[attr-defined]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is a :class:`UsageError` (code 10), not exit code 2.

    Code 2 is a license problem to our users; argparse's own choice would collide with it.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}",
                         hint=_("See '{prog} --help'.", prog=self.prog))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise UsageError(message or f"{self.prog}: bad arguments")
        if message:
            sys.stderr.write(message)
        raise SystemExit(0)


def format_error(error: BaseException, localized: bool = True) -> str:
    """The message shown to the user for an error that ended a run.

    In the language in use (:func:`updater.core.i18n.tr`), or in English with
    ``localized=False`` (the log file, read by the vendor's support).
    """
    show = tr if localized else str
    code = exit_code_for(error)
    if isinstance(error, OpusiError):
        head = _("Error {code}: {title}.", code=code, title=error.title)
        return "\n".join(show(t) for t in (head, error.message, error.safe, error.hint) if t)
    if isinstance(error, KeyboardInterrupt):
        return show(_("Error {code}: interrupted.", code=code))
    detail = f"{type(error).__name__}: {error}"
    return show(_("Error {code}: internal error ({detail}).\n"
                  "Please send the log file to the vendor's support.", code=code, detail=detail))


def run_command(
    work: Callable[[Sequence[str]], int],
    argv: Sequence[str] | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run ``work(argv)`` and turn whatever it raises into an exit code and a message.

    Returns:
        ``work``'s own result, or the documented code of the error it raised.
    """
    stream = stream or sys.stderr
    try:
        return work(list(sys.argv[1:] if argv is None else argv))
    except (OpusiError, KeyboardInterrupt) as e:
        log.error("%s", format_error(e, localized=False).replace("\n", " | "))
        print(format_error(e), file=stream)
        return exit_code_for(e)
    except Exception as e:  # the last resort: a bug must still end with a code and a message
        log.exception("internal error")
        print(format_error(e), file=stream)
        return exit_code_for(e)
