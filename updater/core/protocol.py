"""What client and server agree on: the license header, its format, the error answers.

Pure; shared by the server (which answers) and the fetcher (which turns answers into
errors 1, 2 and 7). The updater imports this module, never the server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from updater.core.errors import (
    LicenseMissingError,
    LicenseRefusedError,
    OpusiError,
    RegistrationMissingError,
)
from updater.core.i18n import Text, _

#: The one header every request carries: the customer's license number, nothing else.
LICENSE_HEADER = "X-Opusi-License"
#: The header an error answer carries besides its JSON body, for clients behind caches
#: that rewrite bodies.
ERROR_HEADER = "X-Opusi-Error"

#: A license number: 1 to 32 letters, digits or dashes, starting with a letter or digit.
LICENSE_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,31}")

#: URL prefixes the server answers under; the rest of a repository is not served.
METADATA_PREFIX = "metadata"
TARGETS_PREFIX = "targets"


def license_problem(number: str | None) -> str | None:
    """Say why ``number`` is not a well-formed license number, or None if it is."""
    if number is None or number == "":
        return _("no license number was given")
    if not LICENSE_PATTERN.fullmatch(number):
        return _("the license number {number!r} is malformed "
                 "(1 to 32 letters, digits or dashes expected)", number=number)
    return None


#: Why the server refused a license, as the JSON body's ``reason`` names it; the client shows
#: its own text for each (in the admin's language), the server's ``message`` for others.
REASON_UNREGISTERED, REASON_REVOKED, REASON_ENDED = "unregistered", "revoked", "ended"


def refusal_text(reason: str, number: str, until: str = "") -> Text | None:
    """The words for a refusal ``reason`` (None for a reason this version does not know)."""
    if reason == REASON_UNREGISTERED:
        return _("the license number {number} is not registered for the Internet update",
                 number=number)
    if reason == REASON_REVOKED:
        return _("the license {number} has been revoked", number=number)
    if reason == REASON_ENDED:
        return _("the update entitlement of license {number} ended on {date}", number=number,
                 date=until)
    return None


@dataclass(frozen=True)
class LicenseAnswer:
    """The server's refusal of a request because of its license number."""

    code: int
    status: int
    message: str
    reason: str = ""
    number: str = ""
    until: str = ""

    def to_json(self) -> bytes:
        """The JSON body the server sends."""
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.reason:
            body.update(reason=self.reason, license=self.number)
        if self.until:
            body["until"] = self.until
        return json.dumps(body).encode()


ANSWER_MALFORMED = 1
ANSWER_REFUSED = 2
ANSWER_UNREGISTERED = 7

_STATUS_FOR_CODE = {ANSWER_MALFORMED: 400, ANSWER_REFUSED: 403, ANSWER_UNREGISTERED: 403}
_ERROR_FOR_CODE: dict[int, type[OpusiError]] = {
    ANSWER_MALFORMED: LicenseMissingError,
    ANSWER_REFUSED: LicenseRefusedError,
    ANSWER_UNREGISTERED: RegistrationMissingError,
}


def license_answer(code: int, message: str, reason: str = "", number: str = "",
                   until: str = "") -> LicenseAnswer:
    """Build the server's refusal for error ``code`` (1, 2 or 7); with a ``reason``, the
    message is its text (:func:`refusal_text`)."""
    if reason:
        message = refusal_text(reason, number, until) or message
    return LicenseAnswer(code=code, status=_STATUS_FOR_CODE[code], message=message,
                         reason=reason, number=number, until=until)


def error_from_answer(header_value: str | None, body: bytes) -> OpusiError | None:
    """Turn a refusal received from the server into the client's error, if it is one.

    Args:
        header_value: The ``X-Opusi-Error`` header, if any.
        body: The response body (read up to a small limit by the caller).

    Returns:
        The error to raise, or None when the answer is not a license refusal.
    """
    message: str = ""
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
        if isinstance(data, dict):
            known = refusal_text(str(data.get("reason", "")), str(data.get("license", ""))[:40],
                                 str(data.get("until", ""))[:20])
            message = known or str(data.get("message", ""))
            header_value = header_value or str(data.get("error", ""))
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        code = int(header_value or "")
    except ValueError:
        return None
    cls = _ERROR_FOR_CODE.get(code)
    if cls is None:
        return None
    return cls(
        _("The update server refused the license: {reason}.",
          reason=message or _("no reason given")),
        hint=_LICENSE_HINTS[code],
    )


_LICENSE_HINTS = {
    ANSWER_MALFORMED: _("Check the license number in update.ini ([Update] license) "
                        "against your license certificate."),
    ANSWER_REFUSED: _("Please contact the vendor about your license."),
    ANSWER_UNREGISTERED: _("Ask the vendor to register your license "
                           "for the Internet update (by phone or e-mail)."),
}
