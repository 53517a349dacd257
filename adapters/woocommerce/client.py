"""HTTP client of the WooCommerce adapter: every call to the store goes through
:meth:`WooCommerceClient.request`.

Two APIs of one WordPress site (platforms.md §3.1, §3.2):

* **REST v3** ``/wp-json/wc/v3/...`` (orders): HTTP Basic auth with the consumer
  key as user and the consumer secret as password. WooCommerce accepts Basic
  auth only over HTTPS, so the store URL must be ``https://``; plain ``http://``
  is allowed for loopback addresses only (test servers).
* **Store API** ``/wp-json/wc/store/v1/...`` (cart, checkout): no auth; a
  :class:`CartSession` carries the ``Cart-Token`` (a JWT naming the cart) and the
  latest ``Nonce`` header, sent on every call and refreshed from every response.

Transport: one ``requests.Session`` (cookies refused, so carts never mix
through cookies), a timeout on every call, and urllib3 ``Retry`` for the
idempotent methods only (GET, HEAD, OPTIONS, DELETE: connection errors, read
errors, 502/503/504). POST and PUT are never repeated by the transport; the
adapter re-reads the order before retrying one.

Errors (the adapter never sees a ``requests`` exception)::

    AdapterError (flask_acp.errors)
    +-- AdapterUnavailableError       timeouts, connection errors, 5xx, 429, HTML pages
    |   |                             (WAF, maintenance), non-JSON bodies
    |   +-- WooCommerceNoAnswerError  the request may have been sent and no answer came
    |                                 (a read timeout, a connection lost): it may still run
    +-- AdapterRejectedError
        +-- WooCommerceError          a WordPress REST error body
                                      {code, message, data{status, ...}} with a 4xx status

``outcome_unknown`` is set on the unavailable errors of a call that changes
something (any method but GET, HEAD, OPTIONS) and may have been executed: no
answer after the request may have left (:class:`WooCommerceNoAnswerError`), a
5xx (PHP may have done the work, then failed: a mail plugin after
``payment_complete()``), a 2xx whose body is not JSON. It is false when the
call certainly did not run (a connection refused or not made in time, a 429,
a 3xx/4xx page from a firewall) and for reads.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import http.cookiejar
import ipaddress
import logging
import typing as t
import urllib.parse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import AdapterUnavailableError
from flask_acp.models import JSON

from ..transport import may_have_been_sent  # noqa: TID251 - installed as flask_acp_adapters

__all__ = [
    "IDEMPOTENT_METHODS",
    "READ_METHODS",
    "CartSession",
    "WooCommerceClient",
    "WooCommerceError",
    "WooCommerceNoAnswerError",
    "WooResponse",
    "is_loopback",
    "validate_site_url",
]

log = logging.getLogger("flask_acp.woocommerce")

#: methods the transport may repeat by itself.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
#: methods that change nothing: their failures never have an unknown outcome.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STORE_API = "/wc/store/v1"
REST_API = "/wc/v3"


class WooCommerceNoAnswerError(AdapterUnavailableError):
    """No answer came to a request that may have been sent (a read timeout, a
    connection lost after it was made): a change may have been made, or may
    even still be under way in WooCommerce (``outcome_unknown`` for changes)."""


class WooCommerceError(AdapterRejectedError):
    """WooCommerce refused a call with a WordPress REST error (4xx).

    :ivar code: WooCommerce's error code (``"woocommerce_rest_product_out_of_stock"``).
    :ivar message: WooCommerce's text (may contain HTML entities).
    :ivar status: the HTTP status.
    :ivar data: the error's ``data`` object (``status``, and e.g. ``cart`` on a 409).
    """

    def __init__(self, code: str, message: str, status: int, data: dict[str, JSON]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.data = data


@dataclasses.dataclass(slots=True)
class CartSession:
    """The Store API credentials of one cart, updated in place by every response.

    :ivar cart_token: the ``Cart-Token`` header (JWT); ``None`` before the first call.
    :ivar nonce: the latest ``Nonce`` header.
    """

    cart_token: str | None = None
    nonce: str | None = None

    def headers(self) -> dict[str, str]:
        """The headers to send: ``Cart-Token`` and ``Nonce`` when known."""
        out = {}
        if self.cart_token:
            out["Cart-Token"] = self.cart_token
        if self.nonce:
            out["Nonce"] = self.nonce
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class WooResponse:
    """A successful (2xx) JSON answer: ``status``, decoded ``data``, ``headers``."""

    status: int
    data: JSON
    headers: cabc.Mapping[str, str]


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_site_url(url: str) -> str:
    """Return the site URL without a trailing slash.

    :raises ValueError: not an http(s) URL with a host, or plain ``http`` to a
        host that is not loopback (the consumer key would travel in clear text).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"{url!r} must use https: WooCommerce accepts the consumer key and secret "
            "(HTTP Basic auth) only over HTTPS; http is allowed for loopback test servers")
    return url.rstrip("/")


def _retry_after(response: requests.Response) -> int | None:
    for name in ("RateLimit-Retry-After", "Retry-After"):
        value = response.headers.get(name, "")
        if value.strip().isdigit():
            return max(1, int(value))
    return None


class WooCommerceClient:
    """One WooCommerce site.

    :param url: the site URL (``https://shop.example``; WordPress under a
        sub-path works, e.g. ``https://example.com/shop``).
    :param consumer_key: REST API key (``ck_...``) of a user allowed to edit orders.
    :param consumer_secret: its secret (``cs_...``).
    :param timeout: seconds to wait for the connection and for each read.
    :param retries: transport retries for idempotent methods.
    :param session: a ``requests.Session`` to use (tests); the client closes only
        the session it created.
    :raises ValueError: ``url`` is not ``https://`` (or ``http://`` to a loopback
        host), or a credential or the timeout is missing or bad.
    """

    def __init__(self, url: str, consumer_key: str, consumer_secret: str, *, timeout: float = 10.0,
                 retries: int = 2, session: requests.Session | None = None) -> None:
        site_url = validate_site_url(url)
        if not consumer_key or not consumer_secret:
            raise ValueError("the consumer key and secret are required")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self.url = site_url
        self.timeout = timeout
        self._auth = (consumer_key, consumer_secret)
        self._owns_session = session is None
        self.session = session or requests.Session()
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                      backoff_factor=0.1, status_forcelist=(502, 503, 504),
                      allowed_methods=IDEMPOTENT_METHODS, raise_on_status=False,
                      respect_retry_after_header=False)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=16)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def close(self) -> None:
        """Close the HTTP session (if this client created it)."""
        if self._owns_session:
            self.session.close()

    def request(self, method: str, route: str, *, json: JSON = None,
                params: cabc.Mapping[str, str] | None = None,
                cart: CartSession | None = None) -> WooResponse:
        """Call ``{url}/wp-json{route}`` and return the decoded 2xx JSON answer.

        :param route: ``/wc/v3/...`` (REST v3, sent with Basic auth) or
            ``/wc/store/v1/...`` (Store API, sent with ``cart``'s headers).
        :param json: the JSON body, if any.
        :param cart: the Store API cart credentials; updated from the response's
            ``Cart-Token`` and ``Nonce`` headers (also on errors).
        :raises WooCommerceNoAnswerError: no answer (read timeout, connection
            lost after the request may have left).
        :raises AdapterUnavailableError: connection not made, 5xx, 429, or a
            non-JSON answer; ``retry_after`` from ``RateLimit-Retry-After`` /
            ``Retry-After`` when given. ``outcome_unknown`` when a change may
            have been made (see the module docstring).
        :raises WooCommerceError: a 4xx WordPress REST error.
        """
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        if route.startswith(REST_API + "/"):
            auth = self._auth
        elif cart is not None:
            headers.update(cart.headers())
        where = f"WooCommerce {method} {route}"
        changes = method.upper() not in READ_METHODS
        try:
            response = self.session.request(
                method, self.url + "/wp-json" + route, json=json, params=params, headers=headers,
                auth=auth, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            sent = may_have_been_sent(exc)
            kind = WooCommerceNoAnswerError if sent else AdapterUnavailableError
            text = (f"no answer within {self.timeout} s ({exc})" if isinstance(exc, requests.Timeout)
                    else f"{type(exc).__name__}: {exc}")
            raise kind(f"{where}: {text}", outcome_unknown=changes and sent) from exc
        with response:
            log.debug("%s -> %s", where, response.status_code)
            if cart is not None and not route.startswith(REST_API + "/"):
                cart.cart_token = response.headers.get("Cart-Token") or cart.cart_token
                cart.nonce = response.headers.get("Nonce") or cart.nonce
            return self._result(where, response, changes=changes)

    @staticmethod
    def _result(where: str, response: requests.Response, *, changes: bool) -> WooResponse:
        status = response.status_code
        if status == 429 or status >= 500:
            raise AdapterUnavailableError(f"{where}: HTTP {status} {response.text[:200]!r}",
                                          retry_after=_retry_after(response),
                                          outcome_unknown=changes and status >= 500)
        try:
            data = response.json()
        except ValueError:
            # An HTML page from a WAF, a maintenance page, a PHP notice before the JSON...
            raise AdapterUnavailableError(
                f"{where}: HTTP {status} with a non-JSON body "
                f"({response.headers.get('Content-Type')}): {response.text[:200]!r}",
                retry_after=_retry_after(response), outcome_unknown=changes and status < 300) from None
        if 200 <= status < 300:
            return WooResponse(status, data, dict(response.headers))
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            details = data.get("data") if isinstance(data.get("data"), dict) else {}
            raise WooCommerceError(data["code"], str(data.get("message") or ""), status,
                                   t.cast(dict[str, JSON], details))
        raise AdapterUnavailableError(f"{where}: unexpected HTTP {status}: {response.text[:200]!r}")
