"""The support desk's defences, against the real ``opusi-repo desk`` process on 127.0.0.1:
nothing without a session, nothing outside a role, no form without its token, guessed
passwords slowed, sessions that end, the desk's pages absent from the update endpoint."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
import urllib3

from tests.conftest import LICENSE, Vendor, make_vendor, served
from tests.support.browser import desk
from updater.core.errors import UsageError
from updater.core.protocol import LICENSE_HEADER
from updater.publisher import cli
from updater.publisher.database import sessions
from updater.publisher.database import staff as staff_table
from updater.publisher.desk import staff
from updater.publisher.desk.serve import check_bind
from updater.publisher.licenses import open_registry

pytestmark = pytest.mark.posix_only

PASSWORD = "richtig-Pferd-Batterie"


@dataclass
class Browser:
    """Just enough of a browser: cookies by name, no redirects followed."""

    url: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, fields: dict[str, str] | None = None,
                ) -> urllib3.BaseHTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                   "Accept-Language": "en"}
        body = None
        if method == "POST":
            body = urlencode(fields or {}).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = urllib3.request(method, self.url + path, body=body, headers=headers,
                                   redirect=False, retries=False, timeout=10)
        for header in response.headers.getlist("Set-Cookie"):
            name, value = header.split(";", 1)[0].split("=", 1)
            if "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def sign_in(self, name: str, password: str = PASSWORD) -> urllib3.BaseHTTPResponse:
        page = self.request("GET", "/login").data.decode()
        token = re.search(r'name="login_token" value="([^"]+)"', page)
        assert token
        return self.request("POST", "/login", {"login_token": token[1], "name": name,
                                                "password": password, "next": "/"})

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.request("GET", path).data.decode())
        assert found, path
        return found[1]


@dataclass
class Site:
    vendor: Vendor
    url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("desk-security")
    vendor = make_vendor(base)
    with open_registry(vendor.db) as registry:
        staff.add(registry.db, "sabine", PASSWORD, ["support"])
        staff.add(registry.db, "ralf", PASSWORD, ["release"])
        staff.add(registry.db, "gast", PASSWORD, ["support"])
    with desk(vendor.db, vendor.repo, vendor.keys, [], base) as url:
        yield Site(vendor, url)


PAGES = ["/", "/licenses", "/licenses/DEMO-1147", "/builds", "/builds/1155", "/status",
         "/audit"]
ACTIONS = [("/licenses", {"number": "X-1"}), ("/licenses/DEMO-1147", {"action": "revoke"}),
           ("/builds/1155", {"action": "withdraw", "reason": "x", "confirm": "yes"}),
           ("/logout", {})]


def _unchanged(site: Site) -> None:
    with open_registry(site.vendor.db) as registry:
        assert registry.get("X-1") is None
        found = registry.get(LICENSE)
        assert found is not None and found.status == "active"
    from updater.publisher.repository import load_state
    assert load_state(site.vendor.repo).build_info(1155).withdrawn is None


def test_nothing_without_a_session(site: Site) -> None:
    anonymous = Browser(site.url)
    for path in PAGES:
        answer = anonymous.request("GET", path)
        assert (answer.status, answer.headers["Location"]) == (303, f"/login?next={path}"), path
    for path, fields in ACTIONS:
        assert anonymous.request("POST", path, fields).status == 303, path
    # a cookie that is no session is no session
    anonymous.cookies["__Host-opusi-desk"] = "guessed"
    assert anonymous.request("GET", "/licenses").status == 303
    _unchanged(site)


def test_nothing_outside_the_role(site: Site) -> None:
    support, release = Browser(site.url), Browser(site.url)
    assert support.sign_in("sabine").status == 303
    assert release.sign_in("ralf").status == 303
    token = release.csrf("/builds")
    for path in ("/licenses", "/licenses/DEMO-1147"):
        assert release.request("GET", path).status == 403
    assert release.request("POST", "/licenses", {"csrf": token, "number": "X-1"}).status == 403
    assert release.request("POST", "/licenses/DEMO-1147",
                           {"csrf": token, "action": "revoke", "reason": "x"}).status == 403
    token = support.csrf("/licenses")
    for action in ("withdraw", "rollout"):
        answer = support.request("POST", "/builds/1155", {
            "csrf": token, "action": action, "reason": "x", "confirm": "yes", "percent": "5"})
        assert answer.status == 403
        assert "This needs the role &#39;release&#39;." in answer.data.decode()
    _unchanged(site)


def test_no_form_without_its_token(site: Site) -> None:
    member = Browser(site.url)
    member.sign_in("sabine")
    for fields in ({}, {"csrf": ""}, {"csrf": "a" * 43}):
        answer = member.request("POST", "/licenses", {**fields, "number": "X-1"})
        assert answer.status == 403
        assert "The form was not accepted" in answer.data.decode()
    # another session's token is not this one's
    other = Browser(site.url)
    other.sign_in("gast")
    stolen = other.csrf("/licenses")
    assert member.request("POST", "/licenses", {"csrf": stolen, "number": "X-1"}).status == 403
    # the login form needs its own token (a page elsewhere cannot sign anyone in)
    fresh = Browser(site.url)
    assert fresh.request("POST", "/login", {"name": "sabine", "password": PASSWORD}
                         ).status == 403
    _unchanged(site)


def test_a_guessed_password_is_slowed(site: Site) -> None:
    guesser = Browser(site.url)
    started = time.monotonic()
    answers = [guesser.sign_in("gast", f"wrong-password-{i}").status for i in range(5)]
    assert answers == [401] * 5
    # the sixth attempt waits, even with the right password
    answer = guesser.sign_in("gast")
    assert answer.status == 429
    assert "Too many failed sign-ins. Try again in 15 minutes." in answer.data.decode()
    assert "__Host-opusi-desk" not in guesser.cookies
    print(f"5 wrong passwords in {time.monotonic() - started:.2f} s, then 429")
    # other accounts are not locked out by it
    assert Browser(site.url).sign_in("sabine").status == 303


def test_the_session_cookie_and_its_end(site: Site) -> None:
    member = Browser(site.url)
    answer = member.sign_in("sabine")
    cookie = next(c for c in answer.headers.getlist("Set-Cookie")
                  if c.startswith("__Host-opusi-desk="))
    assert all(part in cookie for part in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"))
    assert member.request("GET", "/licenses").status == 200
    # idle for longer than the timeout: the session is over
    with open_registry(site.vendor.db) as registry, registry.db.write("age") as conn:
        conn.execute(sessions.update().where(sessions.c.staff == "sabine")
                     .values(last_seen="2026-01-01T00:00:00+00:00"))
    assert member.request("GET", "/licenses").status == 303
    # signed out: the old cookie no longer opens anything
    member.sign_in("sabine")
    kept = dict(member.cookies)
    token = member.csrf("/licenses")
    assert member.request("POST", "/logout", {"csrf": token}).status == 303
    assert Browser(site.url, kept).request("GET", "/licenses").status == 303


def test_passwords_are_stored_as_argon2id(site: Site) -> None:
    with open_registry(site.vendor.db) as registry:
        stored = registry.db.read(lambda conn: conn.execute(
            staff_table.select().where(staff_table.c.name == "sabine")).first())
    assert stored is not None and stored.password.startswith("$argon2id$")
    assert PASSWORD not in stored.password


def test_every_answer_carries_the_strict_headers(site: Site) -> None:
    answer = Browser(site.url).request("GET", "/login")
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"


def test_html_in_a_note_is_text(site: Site) -> None:
    member = Browser(site.url)
    member.sign_in("sabine")
    note = '<script>alert(1)</script><b onmouseover="x()">Praxis</b>'
    token = member.csrf("/licenses")
    assert member.request("POST", "/licenses", {"csrf": token, "number": "HTML-1",
                                                "note": note}).status == 303
    page = member.request("GET", "/licenses/HTML-1").data.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onmouseover=&#34;x()&#34;&gt;" in page
    assert "<script>" not in page


def test_the_desk_is_not_on_the_update_endpoint(site: Site) -> None:
    with served(site.vendor) as update_url:
        for path in ("/login", "/licenses", "/builds/1155", "/audit", "/desk.css"):
            with_license = urllib3.request("GET", update_url + path, retries=False,
                                           headers={LICENSE_HEADER: LICENSE})
            assert with_license.status == 404, path
            assert urllib3.request("POST", update_url + path, retries=False).status == 405


def test_plain_http_only_on_loopback() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(UsageError, match="needs a certificate"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", Path("cert.pem"))


def test_staff_accounts_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import io
    db = str(tmp_path / "r.sqlite3")
    monkeypatch.setattr("sys.stdin", io.StringIO("kurz\n"))
    assert cli.main(["staff", "add", "eva", "--role", "support", "--password-stdin",
                     "--db", db]) == 10
    assert "at least 12 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["staff", "add", "eva", "--role", "support", "--role", "release",
                     "--password-stdin", "--db", db]) == 0
    assert cli.main(["staff", "remove", "eva", "--db", db]) == 0
    capsys.readouterr()
    assert cli.main(["staff", "list", "--db", db]) == 0
    assert re.search(r"eva +release support +closed", capsys.readouterr().out)
