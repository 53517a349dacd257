"""Who may see the merchant console, checked before every console request.

In order, each only when set (at least one must be: ``init_app`` refuses an
open console):

1. the transport: HTTPS outside debug/testing, as the checkout API
   (``ACP_REQUIRE_HTTPS``, ``ACP_TRUSTED_PROXY_HOPS``, plain HTTP from loopback
   with ``ACP_ALLOW_INSECURE_LOOPBACK``) -> 403;
2. ``ACP_CONSOLE_ALLOWED_IPS``: the client address (through the trusted
   proxies) in one of the networks -> else 403;
3. ``ACP_CONSOLE_AUTH``: the host app's check returns ``True`` -> else its
   response, or 403;
4. ``ACP_CONSOLE_PASSWORD_HASH``: a valid login cookie -> else a redirect to
   the login page. The password is checked with
   :func:`werkzeug.security.check_password_hash` (a salted hash, compared in
   constant time); the login is a cookie signed with the app's ``SECRET_KEY``
   (itsdangerous), ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS,
   scoped to the console's path, valid ``ACP_CONSOLE_LOGIN_TTL`` seconds and
   tied to the password hash (a new password ends every login);
5. every ``POST`` (the login form included): a Flask-WTF CSRF token
   (:func:`flask_wtf.csrf.validate_csrf`, kept in the Flask session) -> else 400.

Wrong passwords are counted per client address (an IPv6 one per /64;
:data:`LOGIN_FAILURES`, in the rate limits' storage: shared by every process
with Redis); over the limit a
login is refused with 429 before the password is checked (password guessing).
"""

from __future__ import annotations

import collections.abc as cabc
import hashlib
import ipaddress
import logging
import typing as t

import itsdangerous
import limits
from flask import Flask
from flask import Response
from flask import current_app
from flask import redirect
from flask import request
from flask import url_for
from flask_wtf.csrf import ValidationError
from flask_wtf.csrf import validate_csrf
from limits.storage import MemoryStorage
from limits.storage import Storage
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.security import check_password_hash
from werkzeug.utils import import_string

from ..blueprint import client_scheme_and_addr
from ..blueprint import is_loopback
from ..config import Settings
from ..config import config_error
from ..counters import WindowBudget

log = logging.getLogger("flask_acp")

#: the login cookie's name
LOGIN_COOKIE = "acp_console_login"
_SALT = "flask-acp-console-login"
#: wrong console passwords one client address may send (``limits`` notation, every item applies)
LOGIN_FAILURES = "10/minute;100/hour"

def _counted_as(addr: str) -> str:
    """The client whose wrong passwords ``addr`` counts towards: an IPv6
    address's /64 (one host usually has a whole /64 to pick addresses from),
    else the address itself."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return addr


#: what ``ACP_CONSOLE_AUTH`` is called as: no argument, in the request context
AuthHook = cabc.Callable[[], t.Any]


def _hook(value: t.Any) -> AuthHook | None:
    """``ACP_CONSOLE_AUTH`` as a callable (a ``module:function`` path imported).

    :raises RuntimeError: the path cannot be imported or names no callable.
    """
    if value is None or callable(value):
        return t.cast("AuthHook | None", value)
    try:
        found = import_string(str(value).replace(":", "."))
    except ImportError as exc:  # werkzeug's ImportStringError: the cause, not its multi-line report
        cause = getattr(exc, "exception", exc)
        raise config_error([("ACP_CONSOLE_AUTH", f"cannot import {value!r}: {cause}")]) from None
    if not callable(found):
        raise config_error([("ACP_CONSOLE_AUTH", f"{value!r} is not callable")])
    return t.cast(AuthHook, found)


class ConsoleAccess:
    """The console's gate for one app (see the module docstring).

    :raises RuntimeError: ``ACP_CONSOLE_AUTH`` cannot be imported, or the app
        has no ``SECRET_KEY`` (the login cookie and the CSRF tokens are signed
        with it).
    """

    def __init__(self, settings: Settings, app: Flask, *, counters_url: str = "memory://") -> None:
        if not app.secret_key:
            raise config_error([("ACP_CONSOLE_ENABLED", "the console signs its login cookie and CSRF tokens "
                                 "with the app's SECRET_KEY: set app.config['SECRET_KEY'] (random, secret)")])
        self.settings = settings
        self.hook = _hook(settings.console_auth)
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in settings.console_allowed_ips)
        self.password_hash = settings.console_password_hash
        storage = storage_from_string(counters_url, wrap_exceptions=True)  # the rate limits' storage
        if not isinstance(storage, Storage):  # an async storage URL (the rate limits refuse it): per process
            storage = MemoryStorage()
        self._failures = WindowBudget(SlidingWindowCounterRateLimiter(storage),
                                      limits.parse_many(LOGIN_FAILURES), "acp-console-login")
        if not (app.debug or app.testing) and not app.config.get("SESSION_COOKIE_SECURE"):
            log.warning("the merchant console keeps its CSRF tokens in the Flask session: set "
                        "SESSION_COOKIE_SECURE = True (and serve the console over HTTPS only)")

    # -- the gate ------------------------------------------------------------------

    def gate(self) -> Response | None:
        """Run before every console request: None lets it through, else the
        response to send instead (403, a redirect to the login page, 400)."""
        scheme, addr = client_scheme_and_addr()
        if not self._transport_ok(scheme, addr):
            return _refuse(403, "The merchant console must be reached over HTTPS.")
        if self.networks and not self._allowed(addr):
            return _refuse(403, "This address may not use the merchant console.")
        if self.hook is not None:
            verdict = self.hook()
            if isinstance(verdict, Response):
                return verdict
            if verdict is not True:
                return _refuse(403, "The host application refused access to the merchant console.")
        if request.method == "POST":
            try:
                validate_csrf(request.form.get("csrf_token"))
            except ValidationError as exc:
                return _refuse(400, f"Refused: {exc} Reload the page and try again.")
        if (self.password_hash is not None and request.endpoint != "acp_console.login"
                and not self.logged_in()):
            return t.cast(Response, redirect(url_for("acp_console.login", next=request.full_path)))
        return None

    def _transport_ok(self, scheme: str, addr: str | None) -> bool:
        if not self.settings.require_https or current_app.debug or current_app.testing:
            return True
        return scheme == "https" or (self.settings.allow_insecure_loopback and is_loopback(addr))

    def _allowed(self, addr: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(addr or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    # -- the password login --------------------------------------------------------

    def _serializer(self) -> itsdangerous.URLSafeTimedSerializer:
        return itsdangerous.URLSafeTimedSerializer(current_app.secret_key or "", salt=_SALT)

    def _fingerprint(self) -> str:
        return hashlib.sha256((self.password_hash or "").encode()).hexdigest()[:32]

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches ``ACP_CONSOLE_PASSWORD_HASH`` (constant-time compare)."""
        return self.password_hash is not None and check_password_hash(self.password_hash, password)

    def login_retry_after(self) -> int | None:
        """Seconds until the client may try a password again (None: now), after
        :data:`LOGIN_FAILURES` wrong ones. A storage that fails lets it try."""
        _, addr = client_scheme_and_addr()
        standing = self._failures.standing(_counted_as(addr)) if addr else None
        return standing.wait if standing is not None and standing.left <= 0 else None

    def login_failed(self) -> None:
        """Count one wrong password of the client (and log it, with its address)."""
        _, addr = client_scheme_and_addr()
        log.warning("console: wrong password from %s", addr)
        if addr:
            self._failures.spend(_counted_as(addr))

    def logged_in(self) -> bool:
        """Whether the request carries a valid, unexpired login cookie for the current password."""
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not cookie:
            return False
        try:
            data = self._serializer().loads(cookie, max_age=self.settings.console_login_ttl)
        except itsdangerous.BadData:
            return False
        return isinstance(data, dict) and data.get("pw") == self._fingerprint()

    def set_login(self, response: Response) -> None:
        """Add the login cookie to ``response``."""
        scheme, _ = client_scheme_and_addr()
        response.set_cookie(LOGIN_COOKIE, self._serializer().dumps({"pw": self._fingerprint()}),
                            max_age=self.settings.console_login_ttl, path=self.settings.console_prefix,
                            secure=scheme == "https", httponly=True, samesite="Strict")

    def clear_login(self, response: Response) -> None:
        """Remove the login cookie."""
        response.delete_cookie(LOGIN_COOKIE, path=self.settings.console_prefix, httponly=True,
                               samesite="Strict")


def _refuse(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
