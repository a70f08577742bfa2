"""The support desk's pages: sign in, licenses (support), builds (release), status, audit log.

Every change goes through the same code as the command line (:mod:`updater.publisher.licenses`,
:mod:`updater.publisher.offer`) and writes an audit entry with the staff member's name in the
same transaction (licenses) or right after the signed change (builds).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from werkzeug.wrappers import Response

from updater.core.errors import OpusiError
from updater.publisher import audit, offer, repository
from updater.publisher import status as status_report
from updater.publisher.desk import charts, staff
from updater.publisher.desk.web import N_, Context, Desk, Handler, Refused, redirect
from updater.publisher.licenses import License, LicenseRegistry


@dataclass(frozen=True)
class Sources:
    """What the desk shows and changes besides the registry."""

    repo: Path
    keys: Path | None  # the signing keys for rollout and withdrawal; None: builds read-only
    logs: tuple[Path, ...]  # request logs of the update servers (for the status)


def make_desk(registry: LicenseRegistry, sources: Sources, *, secure: bool = True) -> Desk:
    """The desk's WSGI application."""
    pages = _Pages(registry, sources)
    routes: dict[str, dict[str, Handler]] = {
        "/": {"GET": pages.home},
        "/login": {"GET": pages.login_page, "POST": pages.login},
        "/logout": {"POST": pages.logout},
        "/licenses": {"GET": pages.licenses, "POST": pages.add_license},
        "/licenses/*": {"GET": pages.license, "POST": pages.change_license},
        "/builds": {"GET": pages.builds},
        "/builds/*": {"GET": pages.build, "POST": pages.change_build},
        "/status": {"GET": pages.status},
        "/audit": {"GET": pages.audit_log},
        "/desk.css": {"GET": pages.css},
    }
    desk = Desk(registry, routes, secure=secure)
    pages.desk = desk
    return desk


class _Pages:
    def __init__(self, registry: LicenseRegistry, sources: Sources) -> None:
        self.registry, self.sources = registry, sources
        self.desk: Desk

    # --- signing in ------------------------------------------------------------------------

    def home(self, ctx: Context) -> Response:
        session = ctx.require()
        return redirect("/licenses" if "support" in session.staff.roles else "/builds")

    def login_page(self, ctx: Context) -> Response:
        return self.desk.start_login(ctx, next=ctx.request.args.get("next", "/"))

    def login(self, ctx: Context) -> Response:
        self.desk.check_login_token(ctx)
        name, address = ctx.form("name"), ctx.request.remote_addr or "?"
        wait = max(self.desk.login_names.wait(name.lower()),
                   self.desk.login_addresses.wait(address))
        if wait > 0:
            raise Refused(429, N_("Too many failed sign-ins. Try again in %(minutes)d "
                                  "minutes."), minutes=max(1, -(-int(wait) // 60)))
        member = staff.verify(self.registry.db, name, ctx.form("password"))
        if member is None:
            self.desk.login_names.refused(name.lower())
            self.desk.login_addresses.refused(address)
            response = self.desk.start_login(
                ctx, next=ctx.form("next", "/"), name=name,
                error=ctx._(N_("The name or the password is wrong.")))
            response.status_code = 401
            return response
        return self.desk.signed_in(staff.open_session(self.registry.db, member),
                                   ctx.form("next", "/"))

    def logout(self, ctx: Context) -> Response:
        ctx.require()
        staff.close_session(self.registry.db, ctx.request.cookies.get(
            "__Host-opusi-desk", ""))
        return self.desk.signed_out()

    # --- licenses (support) ------------------------------------------------------------------

    def licenses(self, ctx: Context) -> Response:
        ctx.require("support")
        query = ctx.request.args.get("q", "").strip()
        found = self.registry.search(query) if query else self.registry.search("", limit=200)
        return self.desk.render(ctx, "licenses.html", licenses=found, query=query)

    def add_license(self, ctx: Context) -> Response:
        session = ctx.require("support")
        number = ctx.form("number")
        until = _date(ctx, ctx.form("until"))
        lic = self._registry_change(ctx, lambda: self.registry.add(
            number, entitled_until=until, note=ctx.form("note"), actor=session.staff.name))
        return redirect(f"/licenses/{lic.number}?done=added")

    def license(self, ctx: Context) -> Response:
        ctx.require("support")
        number = ctx.rest
        lic = self.registry.get(number)
        if lic is None:
            raise Refused(404, N_("The license %(number)s is not registered."), number=number)
        return self.desk.render(ctx, "license.html", lic=lic, done=ctx.request.args.get("done"),
                                history=audit.entries(self.registry.db, 50, subject=number))

    def change_license(self, ctx: Context) -> Response:
        session = ctx.require("support")
        number = ctx.rest
        action, reason, who = ctx.form("action"), ctx.form("reason"), session.staff.name
        if action == "revoke":
            if not reason:
                raise Refused(400, N_("Give a reason for revoking the license."))
            self._registry_change(ctx, lambda: self.registry.revoke(number, actor=who,
                                                                      reason=reason))
        elif action == "restore":
            self._registry_change(ctx, lambda: self.registry.restore(number, actor=who,
                                                                       reason=reason))
        elif action == "until":
            until = _date(ctx, ctx.form("until"))
            self._registry_change(ctx, lambda: self.registry.set_until(number, until, actor=who,
                                                                         reason=reason))
        else:
            raise Refused(400, N_("Unknown action."))
        return redirect(f"/licenses/{number}?done={action}")

    def _registry_change(self, ctx: Context, change: Callable[[], License]) -> License:
        try:
            return change()
        except OpusiError as e:
            raise Refused(400, N_("Nothing was changed: %(reason)s"), reason=str(e)) from e

    # --- builds (release) --------------------------------------------------------------------

    def builds(self, ctx: Context) -> Response:
        ctx.require()
        return self.desk.render(ctx, "builds.html", builds=self._builds(),
                                can_change=self._can_change(ctx))

    def build(self, ctx: Context) -> Response:
        ctx.require()
        number = _build_number(ctx)
        found = [b for b in self._builds() if b.info.build == number]
        if not found:
            raise Refused(404, N_("Build %(build)s is not published."), build=number)
        return self.desk.render(ctx, "build.html", build=found[0], can_change=self._can_change(ctx),
                                done=ctx.request.args.get("done"),
                                history=audit.entries(self.registry.db, 50,
                                                      subject=f"build {number}"))

    def change_build(self, ctx: Context) -> Response:
        session = ctx.require("release")
        if self.sources.keys is None:
            raise Refused(409, N_("The desk was started without the signing keys (--keys): "
                                  "builds can only be viewed here."))
        number, action, reason = _build_number(ctx), ctx.form("action"), ctx.form("reason")
        if ctx.form("confirm") != "yes":
            raise Refused(400, N_("Tick the box to confirm the change."))
        if not reason:
            raise Refused(400, N_("Give a reason for the change."))
        keys = self.sources.keys
        try:
            if action == "withdraw":
                info = offer.withdraw(self.sources.repo, keys, number, reason)
                detail = f"withdrawn; reason: {reason}"
            elif action == "offer":
                info = offer.withdraw(self.sources.repo, keys, number, None)
                detail = f"offered again; reason: {reason}"
            elif action == "rollout":
                percent = _percent(ctx.form("percent"))
                channels = tuple(c for c in ctx.form("channels").replace(",", " ").split() if c)
                info = offer.roll_out(self.sources.repo, keys, number,
                                      None if percent >= 100 else percent, channels)
                detail = f"offered to {offer.describe(info.audience)}; reason: {reason}"
            else:
                raise Refused(400, N_("Unknown action."))
        except OpusiError as e:
            raise Refused(400, N_("Nothing was changed: %(reason)s"), reason=str(e)) from e
        with self.registry.db.write("audit") as conn:
            audit.record(conn, session.staff.name, f"build.{action}", f"build {info.build}",
                         detail)
        return redirect(f"/builds/{number}?done={action}")

    def _builds(self) -> list[charts.BuildRow]:
        state = repository.load_state(self.sources.repo)
        return charts.build_rows(state, self.sources.repo)

    def _can_change(self, ctx: Context) -> bool:
        return (ctx.session is not None and "release" in ctx.session.staff.roles
                and self.sources.keys is not None)

    # --- status and audit --------------------------------------------------------------------

    def status(self, ctx: Context) -> Response:
        ctx.require()
        lines: list[str] = []
        for log in self.sources.logs:
            try:
                lines += log.read_text("utf-8", errors="replace").splitlines()
            except OSError:
                ctx.notices.append(ctx._(N_("The request log %(file)s cannot be read."),
                                         file=str(log)))
        requests = status_report.read_requests(lines)
        report = status_report.summarize(requests)
        return self.desk.render(
            ctx, "status.html", report=report, stuck=report.stuck(),
            on_build=charts.on_build_chart(requests), checks=charts.checks_chart(requests),
            logs=self.sources.logs)

    def audit_log(self, ctx: Context) -> Response:
        ctx.require()
        return self.desk.render(ctx, "audit.html", entries=audit.entries(self.registry.db, 500))

    def css(self, ctx: Context) -> Response:
        css = (importlib.resources.files("updater.publisher.desk") / "templates" / "desk.css")
        response = Response(css.read_text("utf-8"), content_type="text/css; charset=utf-8")
        response.headers["Cache-Control"] = "max-age=3600"
        return response


def _date(ctx: Context, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise Refused(400, N_("%(text)s is not a date (YYYY-MM-DD)."), text=text) from e


def _percent(text: str) -> float:
    try:
        value = float(text.replace(",", "."))
    except ValueError as e:
        raise Refused(400, N_("%(text)s is not a percentage."), text=text) from e
    if not 0 <= value <= 100:
        raise Refused(400, N_("A percentage is from 0 to 100."))
    return value


def _build_number(ctx: Context) -> int:
    rest = ctx.rest
    if not rest.isdigit():
        raise Refused(404, N_("There is no such page."))
    return int(rest)
