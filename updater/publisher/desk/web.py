"""The support desk's plumbing: requests and responses (werkzeug), pages (Jinja2, escaped), the
staff's session cookie, the forms' CSRF token, the language (German or English), login
throttling. The pages themselves are in :mod:`updater.publisher.desk.pages`.

Every answer carries a strict Content-Security-Policy (no script at all, styles and images from
the desk only), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``. The session cookie
is ``__Host-`` prefixed, ``Secure``, ``HttpOnly`` and ``SameSite=Strict``; every POST must carry
its session's form token, the login form a token of its own cookie (double submit).
"""

from __future__ import annotations

import gettext
import hmac
import importlib.resources
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from updater.publisher.desk import staff
from updater.publisher.desk.staff import Session
from updater.publisher.licenses import LicenseRegistry
from updater.publisher.throttle import FailureThrottle

DOMAIN = "desk"
LANGUAGES = ("de", "en")
SESSION_COOKIE = "__Host-opusi-desk"
LOGIN_COOKIE = "__Host-opusi-login"
LANGUAGE_COOKIE = "opusi-desk-lang"
#: Failed logins per account name (and per address) before every attempt waits.
LOGIN_LIMIT, LOGIN_WINDOW = 5, 900.0
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def N_(message: str) -> str:  # noqa: N802 - the usual name of gettext's "mark only"
    """Mark ``message`` for the desk's catalog; it is translated where it is shown."""
    return message


class Refused(Exception):
    """A request the desk does not serve: shown as a page with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, **args: object) -> None:
        super().__init__(message)
        self.status, self.message, self.args_ = status, message, args


@dataclass
class Context:
    """One request as the pages see it."""

    request: Request
    language: str
    session: Session | None
    translations: gettext.NullTranslations
    rest: str = ""  # the last path segment of a route ending in /*
    notices: list[str] = field(default_factory=list)

    def _(self, message: str, **args: object) -> str:
        """``message`` in the request's language, with ``args`` filled in (``%(name)s``)."""
        text = self.translations.gettext(message)
        return text % args if args else text

    def require(self, role: str | None = None) -> Session:
        """The session; refuses without one (to the login) or without ``role`` (403)."""
        if self.session is None:
            raise Refused(401, N_("Please sign in."))
        if role is not None and role not in self.session.staff.roles:
            raise Refused(403, N_("This needs the role '%(role)s'."), role=role)
        return self.session

    def form(self, name: str, default: str = "") -> str:
        return str(self.request.form.get(name, default)).strip()


Handler = Callable[[Context], Response]


class Desk:
    """The WSGI application of the support desk."""

    def __init__(self, registry: LicenseRegistry, routes: Mapping[str, Mapping[str, Handler]],
                 *, secure: bool = True) -> None:
        """``routes``: path -> method -> handler (a path may end in ``/*``: any one segment
        after it, as :attr:`Context.rest`)."""
        self.registry, self.routes, self.secure = registry, routes, secure
        self.login_names = FailureThrottle(LOGIN_LIMIT, LOGIN_WINDOW, loopback=True)
        self.login_addresses = FailureThrottle(LOGIN_LIMIT * 4, LOGIN_WINDOW, loopback=True)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_form_memory_size = 64 * 1024
        try:
            response = self._answer(request)
        except HTTPException as e:
            response = e.get_response(environ)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        language = _language(request)
        token = request.cookies.get(SESSION_COOKIE)
        session = staff.find_session(self.registry.db, token) if token else None
        ctx = Context(request, language, session, translations(language))
        try:
            handler, ctx.rest = self._route(request.path, request.method)
            if request.method == "POST" and session is not None and handler is not None:
                _check_csrf(ctx.form("csrf"), session.csrf)
            if handler is None:
                raise Refused(404, N_("There is no such page."))
            response = handler(ctx)
        except Refused as e:
            if e.status == 401:
                return redirect(f"/login?next={request.path}")
            response = self.render(ctx, "refused.html", status=e.status,
                                   message=ctx._(e.message, **e.args_))
            response.status_code = e.status
        if "lang" in request.args and request.args["lang"] in LANGUAGES:
            response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400,
                                samesite="Strict", secure=self.secure, httponly=True)
        return response

    def _route(self, path: str, method: str) -> tuple[Handler | None, str]:
        found = self.routes.get(path)
        rest = ""
        if found is None and path.count("/") >= 2:
            head, _, rest = path.rpartition("/")
            found = self.routes.get(head + "/*") if rest else None
        if found is None:
            return None, rest
        handler = found.get(method)
        if handler is None:
            raise Refused(405, N_("This page does not take that kind of request."))
        return handler, rest

    def render(self, ctx: Context, template: str, **values: Any) -> Response:
        """The page ``template`` in the request's language."""
        page = environment(ctx.language).get_template(template).render(
            ctx=ctx, session=ctx.session, language=ctx.language, path=ctx.request.path,
            csrf=ctx.session.csrf if ctx.session else "", **values)
        return Response(page, content_type="text/html; charset=utf-8")

    def start_login(self, ctx: Context, **values: Any) -> Response:
        """The login page with a fresh double-submit token in its own cookie."""
        token = secrets.token_urlsafe(24)
        response = self.render(ctx, "login.html", login_token=token, **values)
        response.set_cookie(LOGIN_COOKIE, token, secure=self.secure, httponly=True,
                            samesite="Strict", path="/")
        return response

    def check_login_token(self, ctx: Context) -> None:
        _check_csrf(ctx.form("login_token"), ctx.request.cookies.get(LOGIN_COOKIE, ""))

    def signed_in(self, token: str, target: str) -> Response:
        response = redirect(target if target.startswith("/") and not target.startswith("//")
                            else "/")
        response.set_cookie(SESSION_COOKIE, token, secure=self.secure, httponly=True,
                            samesite="Strict", path="/")
        response.delete_cookie(LOGIN_COOKIE, secure=self.secure, httponly=True,
                               samesite="Strict", path="/")
        return response

    def signed_out(self) -> Response:
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, secure=self.secure, httponly=True,
                               samesite="Strict", path="/")
        return response


def redirect(target: str) -> Response:
    """303 See Other to ``target`` (after a form: the browser GETs it)."""
    return Response("", status=303, headers={"Location": target})


def _check_csrf(given: str, expected: str) -> None:
    if not given or not expected or not hmac.compare_digest(given, expected):
        raise Refused(403, N_("The form was not accepted (it is too old or did not come from "
                              "this page). Open the page again and repeat."))


def _language(request: Request) -> str:
    asked = request.args.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if asked in LANGUAGES:
        return str(asked)
    return request.accept_languages.best_match(LANGUAGES, default="de") or "de"


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The desk's catalog for ``language`` (English: the messages as written)."""
    locale = importlib.resources.files("updater") / "locale"
    return gettext.translation(DOMAIN, localedir=str(locale), languages=[language],
                               fallback=True)


@cache
def environment(language: str) -> Environment:
    """Jinja2 with escaping on and the desk's catalog for ``language`` installed."""
    env = Environment(loader=PackageLoader("updater.publisher.desk", "templates"),
                      autoescape=select_autoescape(default=True), extensions=["jinja2.ext.i18n"],
                      trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["size"] = lambda n: size_text(int(n), language)
    return env


def size_text(n: int, language: str) -> str:
    """``n`` bytes for people: ``3.4 MB``, ``12 kB``, ``800 bytes`` (German: ``3,4 MB``)."""
    if n >= 1_000_000:
        text = f"{n / 1e6:.1f} MB"
    elif n >= 1000:
        text = f"{n / 1e3:.0f} kB"
    else:
        text = f"{n} " + ("Bytes" if language == "de" else "bytes")
    return text.replace(".", ",") if language == "de" else text
