"""HTTP client for the Shopify Admin GraphQL API.

One :class:`requests.Session` per client, with urllib3 ``Retry`` for
*connection* failures only (the request never reached Shopify, so even a
mutation is safe to resend); everything goes through :meth:`ShopifyClient._request`,
which sets the timeout, the ``X-Shopify-Access-Token`` header and translates
failures. A query whose connection drops after sending is sent once more; a
mutation never is (the adapter re-reads what it changed instead).
https://shopify.dev/docs/api/admin-graphql#endpoints

Exceptions (all from :mod:`flask_acp.errors`, so the checkout service maps them)::

    AdapterError
    +-- AdapterUnavailableError     timeouts, connection errors, 5xx, throttling that
    |   |                           would need a longer wait than allowed (retry_after)
    |   |                           (and 401 after a refresh, 402, 403, 423: the merchant's to fix)
    |   +-- ShopifyThrottledError   THROTTLED (HTTP 200) or HTTP 429 beyond the wait budget
    |   +-- ShopifyNoAnswerError    the request may have been sent and no answer came (a read
    |                               timeout, a connection lost): it may even still be running
    +-- AdapterRejectedError        404 and other 4xx, GraphQL errors
        +-- ShopifyGraphQLError     top-level ``errors`` of a 200 response (``.errors``)

``outcome_unknown`` is set on the unavailable errors of a *mutation* that may
have been executed: no answer after the request may have left (a read timeout,
a connection lost: :class:`ShopifyNoAnswerError`), a 5xx, an
``INTERNAL_SERVER_ERROR``/``TIMEOUT`` GraphQL error, an answer that cannot be
read. It is false when the mutation certainly did not run (a connection
refused or not made in time, throttling, 401/402/403/423) and for every query
(a read changes nothing).

Throttling (https://shopify.dev/docs/api/usage/rate-limits): a cost-based
leaky bucket. A throttled response (``errors[].extensions.code == "THROTTLED"``
with ``extensions.cost.throttleStatus``) is retried after
``(requestedQueryCost - currentlyAvailable) / restoreRate`` seconds; a 429
after its ``Retry-After`` (default 1 s). Throttled requests were not executed,
so retrying mutations is safe. When the total wait for one call would exceed
``max_throttle_wait`` the client raises :class:`ShopifyThrottledError` with
``retry_after`` instead of sleeping.

Auth: a static Admin API access token, or the client-credentials grant
(``POST {shop}/admin/oauth/access_token``, ``grant_type=client_credentials``)
whose token is refreshed before ``expires_in`` runs out (and once on a 401).
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/client-credentials-grant
"""

from __future__ import annotations

import collections.abc as cabc
import logging
import math
import threading
import time
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
    "DEFAULT_API_VERSION",
    "ShopifyClient",
    "ShopifyGraphQLError",
    "ShopifyNoAnswerError",
    "ShopifyThrottledError",
    "validate_shop_url",
]

log = logging.getLogger("flask_acp.shopify")

#: the Admin API version used when ``SHOPIFY_API_VERSION`` is not set.
DEFAULT_API_VERSION = "2026-10"
_USER_AGENT = "flask-acp (shopify adapter; +https://github.com/agentic-commerce-protocol)"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class ShopifyThrottledError(AdapterUnavailableError):
    """Shopify throttled the call and waiting it out would exceed the wait budget.

    :ivar retry_after: whole seconds Shopify's cost figures (or ``Retry-After``) imply.
    :ivar delay: the same wait in (fractional) seconds.
    """

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message, retry_after=max(1, math.ceil(delay)))
        self.delay = delay


class ShopifyNoAnswerError(AdapterUnavailableError):
    """No answer came to a request that may have been sent (a read timeout, a
    connection lost after it was made): a mutation may have been executed, or
    may even still be running at Shopify (``outcome_unknown`` for mutations)."""


class ShopifyGraphQLError(AdapterRejectedError):
    """A 200 response whose top-level ``errors`` is set (bad query, access denied...).

    :ivar errors: Shopify's ``errors`` list (``[{message, extensions{code}...}]``).
    """

    def __init__(self, message: str, errors: list[dict[str, JSON]]) -> None:
        super().__init__(message)
        self.errors = errors


class _AuthError(AdapterRejectedError):
    """HTTP 401 (internal: triggers one token refresh with client credentials)."""


class _ConnectionLost(ShopifyNoAnswerError):
    """The connection failed, maybe after the request was sent (internal: a
    query is resent once, a mutation never). ``outcome_unknown`` tells which,
    for a mutation."""


def validate_shop_url(url: str) -> str:
    """Return ``scheme://host[:port]`` of the shop, without a trailing slash.

    :raises ValueError: not an absolute http(s) URL with a host, has a path,
        query or fragment, or is plain ``http`` to a host that is not loopback
        (the access token would travel in clear text).
    """
    parts = urllib.parse.urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute https URL such as https://shop.myshopify.com, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must be scheme and host only (no path), got {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"must use https (plain http is only accepted for loopback hosts), got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


class ShopifyClient:
    """Send Admin GraphQL operations to one shop.

    :param shop_url: ``https://{shop}.myshopify.com`` (scheme and host only).
    :param access_token: a static Admin API access token (``shpat_...``); or
    :param client_id: with ``client_secret``, use the client-credentials grant.
    :param api_version: the Admin API version in the URL (``"2026-10"``).
    :param timeout: seconds, for connecting and for reading each response.
    :param max_throttle_wait: seconds one call may spend waiting for the
        throttle bucket before giving up with :class:`ShopifyThrottledError`.
    :param session: a ``requests.Session`` to use (tests); by default the
        client makes and owns one.
    :param sleep: ``time.sleep`` (tests inject their own).
    :param clock: monotonic seconds, for token expiry (tests inject their own).
    """

    def __init__(
        self,
        shop_url: str,
        *,
        access_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 10.0,
        max_throttle_wait: float = 5.0,
        session: requests.Session | None = None,
        sleep: cabc.Callable[[float], None] = time.sleep,
        clock: cabc.Callable[[], float] = time.monotonic,
    ) -> None:
        self.shop_url = validate_shop_url(shop_url)
        if bool(access_token) == bool(client_id and client_secret):
            raise ValueError("give either access_token or client_id and client_secret")
        self.api_version = api_version
        self.timeout = timeout
        self.max_throttle_wait = max_throttle_wait
        self._static_token = access_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._sleep = sleep
        self._clock = clock
        self._token: str | None = access_token
        self._token_expires = math.inf
        self._token_lock = threading.Lock()
        self._version_warned = False
        self._owns_session = session is None
        self.session = session or requests.Session()
        if self._owns_session:
            retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0,
                          backoff_factor=0.1, raise_on_status=False)
            for prefix in ("https://", "http://"):
                self.session.mount(prefix, HTTPAdapter(max_retries=retry))
        self.session.headers.update({"User-Agent": _USER_AGENT, "Accept": "application/json"})

    @property
    def graphql_url(self) -> str:
        """``{shop}/admin/api/{version}/graphql.json``."""
        return f"{self.shop_url}/admin/api/{self.api_version}/graphql.json"

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._owns_session:
            self.session.close()

    # -- operations -----------------------------------------------------------------

    def execute(self, document: str, variables: cabc.Mapping[str, JSON] | None = None, *,
                operation_name: str) -> dict[str, JSON]:
        """Run one GraphQL operation and return its ``data``.

        Throttled calls are retried after the back-off Shopify's cost figures
        imply (bounded by ``max_throttle_wait``); with client credentials an
        expired token is refreshed once.

        :param document: the GraphQL document (one of :mod:`.queries`).
        :param variables: its variables, JSON-able.
        :param operation_name: the operation to run (``AcpDraftOrderCreate``).
        :raises ShopifyThrottledError: throttled beyond the wait budget (``retry_after`` set).
        :raises ShopifyNoAnswerError: no answer (read timeout, connection lost);
            ``outcome_unknown`` for a mutation that may have been sent.
        :raises AdapterUnavailableError: connection refused, 5xx,
            ``INTERNAL_SERVER_ERROR``, a body that is not JSON; ``outcome_unknown``
            for a mutation that may have been executed (see the module docstring).
        :raises ShopifyGraphQLError: other top-level GraphQL errors.
        :raises AdapterRejectedError: 4xx other than 429.
        """
        body = {"query": document, "variables": dict(variables or {}), "operationName": operation_name}
        waited = 0.0
        refreshed = False
        mutation = not document.lstrip().startswith(("query", "{"))
        resend = not mutation  # reads only; never a mutation
        while True:
            try:
                payload = self._request(self.graphql_url, body, auth=True, mutation=mutation)
            except _ConnectionLost:
                if not resend:
                    raise
                resend = False
                log.info("connection to Shopify lost during %s; sending the query again", operation_name)
                continue
            except _AuthError:
                if self._static_token is not None or refreshed:
                    # the merchant can fix credentials: retryable, so a paid order is
                    # placed once they do (and refunded only after the placement deadline)
                    raise AdapterUnavailableError(
                        "Shopify rejected the access token (401); check SHOPIFY_ACCESS_TOKEN or the app's "
                        "client credentials", retry_after=60) from None
                refreshed = True
                self._invalidate_token()
                continue
            except ShopifyThrottledError as exc:
                waited = self._wait(operation_name, exc.delay, waited, exc)
                continue
            errors = payload.get("errors")
            if not errors:
                data = payload.get("data")
                if not isinstance(data, dict):
                    raise AdapterUnavailableError(f"Shopify {operation_name}: response without data",
                                                  outcome_unknown=mutation)
                return data
            errors_list: list[dict[str, JSON]] = (
                [e for e in errors if isinstance(e, dict)] if isinstance(errors, list)
                else [{"message": str(errors)}])
            codes = {str((e.get("extensions") or {}).get("code") or "") for e in errors_list}
            if "THROTTLED" in codes:
                delay = _throttle_delay(payload.get("extensions"))
                throttled = ShopifyThrottledError(f"Shopify throttled {operation_name}", delay=delay)
                waited = self._wait(operation_name, delay, waited, throttled)
                continue
            text = "; ".join(str(e.get("message")) for e in errors_list)
            if codes & {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"}:
                raise AdapterUnavailableError(f"Shopify {operation_name} failed: {text}", retry_after=1,
                                              outcome_unknown=mutation)
            raise ShopifyGraphQLError(f"Shopify {operation_name} failed: {text}", errors_list)

    def _wait(self, operation: str, delay: float, waited: float, exc: ShopifyThrottledError) -> float:
        if waited + delay > self.max_throttle_wait:
            raise ShopifyThrottledError(
                f"Shopify throttled {operation}; it needs {delay:.1f} s more than the "
                f"{self.max_throttle_wait:.1f} s allowed", delay=delay,
            ) from exc
        log.info("Shopify throttled %s; retrying in %.2f s", operation, delay)
        self._sleep(delay)
        return waited + delay

    # -- the one request method -------------------------------------------------------

    def _request(self, url: str, body: cabc.Mapping[str, JSON], *, auth: bool,
                 mutation: bool = False) -> dict[str, JSON]:
        """POST ``body`` (JSON) to ``url`` and return the parsed JSON object.

        :param mutation: the body changes something: errors after which it may
            have been executed carry ``outcome_unknown``.
        :raises _AuthError: 401.
        :raises ShopifyThrottledError: 429 (``retry_after`` from ``Retry-After``).
        :raises ShopifyNoAnswerError: read timeout, connection lost (``_ConnectionLost``).
        :raises AdapterUnavailableError: connection not made, 5xx, non-JSON body.
        :raises AdapterRejectedError: other 4xx.
        """
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["X-Shopify-Access-Token"] = self._access_token()
        try:
            response = self.session.post(url, json=dict(body), headers=headers,
                                         timeout=(self.timeout, self.timeout))
        except requests.Timeout as exc:
            sent = may_have_been_sent(exc)
            kind = ShopifyNoAnswerError if sent else AdapterUnavailableError
            raise kind(f"Shopify did not answer within {self.timeout} s",
                       outcome_unknown=mutation and sent) from exc
        except requests.ConnectionError as exc:
            # a refused connection is retried by urllib3 (connect=2) before it reaches here
            raise _ConnectionLost(f"cannot reach Shopify: {exc}",
                                  outcome_unknown=mutation and may_have_been_sent(exc)) from exc
        except requests.RequestException as exc:
            raise AdapterUnavailableError(f"cannot reach Shopify: {exc}",
                                          outcome_unknown=mutation and may_have_been_sent(exc)) from exc
        with response:
            status = response.status_code
            retry_after = _retry_after(response.headers.get("Retry-After"))
            if status == 401:
                raise _AuthError("401 Unauthorized")
            if status == 429:
                delay = 1.0 if retry_after is None else float(retry_after)
                raise ShopifyThrottledError("Shopify answered 429 Too Many Requests", delay=delay)
            if status >= 500:
                raise AdapterUnavailableError(f"Shopify answered HTTP {status}",
                                              retry_after=None if retry_after is None else
                                              max(1, math.ceil(retry_after)), outcome_unknown=mutation)
            if status in (402, 403, 423):
                # shop frozen, app scopes missing, shop locked: the merchant's to fix, retryable
                raise AdapterUnavailableError(f"Shopify answered HTTP {status}: {_errors_text(response)}",
                                              retry_after=60 if retry_after is None else
                                              max(1, math.ceil(retry_after)))
            if status >= 400:
                raise AdapterRejectedError(f"Shopify answered HTTP {status}: {_errors_text(response)}")
            version = response.headers.get("X-Shopify-API-Version")
            if auth and version and version != self.api_version and not self._version_warned:
                self._version_warned = True
                log.warning("Shopify answered with API version %s instead of %s (the requested version "
                            "is not supported; update SHOPIFY_API_VERSION)", version, self.api_version)
            try:
                payload = response.json()
            except ValueError as exc:
                raise AdapterUnavailableError(f"Shopify answered HTTP {status} without JSON",
                                              outcome_unknown=mutation) from exc
        if not isinstance(payload, dict):
            raise AdapterUnavailableError("Shopify answered with a JSON value that is not an object",
                                          outcome_unknown=mutation)
        return payload

    # -- tokens ---------------------------------------------------------------------

    def _access_token(self) -> str:
        if self._static_token is not None:
            return self._static_token
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_expires:
                self._fetch_token()
            return t.cast(str, self._token)

    def _invalidate_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _fetch_token(self) -> None:
        payload = self._request(f"{self.shop_url}/admin/oauth/access_token", {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "grant_type": "client_credentials",
        }, auth=False)
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise AdapterRejectedError("Shopify's access_token response carries no access_token")
        expires_in = payload.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else math.inf
        # refresh ahead of expiry: 10 % of the lifetime, at most 5 minutes
        self._token = token
        self._token_expires = self._clock() + lifetime - min(300.0, lifetime / 10)


def _throttle_delay(extensions: JSON) -> float:
    """Seconds until the bucket holds the requested cost:
    ``(requestedQueryCost - currentlyAvailable) / restoreRate`` (1 s if unknown)."""
    cost = (extensions or {}).get("cost") if isinstance(extensions, dict) else None
    if not isinstance(cost, dict):
        return 1.0
    status = cost.get("throttleStatus") or {}
    try:
        requested = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return 1.0
    if rate <= 0:
        return 1.0
    return max(0.0, (requested - available) / rate)


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (Shopify sends ``"2.0"``); HTTP dates are ignored."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _errors_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else body
    return str(errors)[:500]
