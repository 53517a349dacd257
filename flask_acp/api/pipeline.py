"""The request pipeline, as plain Python shared by every binding (the Flask
blueprint today; MCP next): no Flask, no Werkzeug.

For one ACP operation, in order:

0. the client address's rate limit (``ACP_RATE_LIMIT_PER_IP``, before
   authentication; :mod:`flask_acp.api.limits`) -> 429;
1. authenticate: ``Authorization: Bearer`` against every agent's keys
   (constant time) -> :class:`~flask_acp.errors.AuthenticationError`; then the
   agent's rate limits (and ``complete``'s, per agent and per session) -> 429;
   then the agent's request-signature policy (:mod:`flask_acp.api.signatures`)
   -> 401 ``invalid_signature`` when ``strict``;
2. negotiate the version: ``API-Version`` among ``ACP_API_VERSIONS`` (or an
   alias of one, ``2025-09-12``) -> :class:`~flask_acp.errors.APIVersionError`
   (with ``supported_versions``);
3. for state changes (POST): read the JSON body, then idempotency
   (:mod:`flask_acp.api.idempotency`: replay, conflict, in flight; the key is
   optional before 2026-04-17, and a conflict is 409 there);
4. parse the body with the version's request schema into a core input
   (400 with a JSONPath ``param``);
5. call the checkout service (the cart service for the Cart API's
   ``cart_*`` operations: served only when ``ACP_CARTS_ENABLED``, else 404, and
   only in versions that define carts, else 400 ``unsupported_api_version``
   naming them);
6. render the session (the cart) in the negotiated version.

Errors from any step are rendered through the one error table
(:mod:`flask_acp.api.errors`). The binding checks its transport (HTTPS, body
size) before calling :meth:`Pipeline.handle`, and adds what is its own
(``Request-Id``, caching headers).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import functools
import hashlib
import hmac
import logging
import time
import typing as t

from marshmallow import Schema

from .. import i18n
from .. import logs
from ..carts import CartService
from ..checkout import CheckoutService
from ..config import Agent
from ..config import Settings
from ..errors import ACPError
from ..errors import APIVersionError
from ..errors import AuthenticationError
from ..errors import IdempotencyConflictError
from ..errors import NotFoundError
from ..models import CheckoutSession
from ..payments.base import PaymentProcessor
from ..store.base import IdempotencyRecords
from ..versions import WireVersion
from ..versions.base import RenderCart
from .body import load
from .body import read_json
from .idempotency import fingerprint
from .idempotency import run_idempotent
from .limits import RateLimits
from .response import ApiResponse
from .response import error_response
from .response import json_response
from .signatures import SignatureChecker

log = logging.getLogger("flask_acp")

#: the operations of the checkout API and of the Cart API (``cart_*``), and
#: whether each changes state (POST, or PUT for ``cart_update``)
OPERATIONS: dict[str, bool] = {"create": True, "update": True, "get": False, "complete": True,
                               "cancel": True, "cart_create": True, "cart_get": False, "cart_update": True,
                               "cart_cancel": True}
#: operations whose REST method is neither POST nor GET
_METHODS = {"cart_update": "PUT"}
#: the Cart API's operations (ACP 2026-04-17, optional service)
CART_OPERATIONS = frozenset(name for name in OPERATIONS if name.startswith("cart_"))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    """One ACP operation as a binding received it.

    :ivar operation: ``create``, ``update``, ``get``, ``complete`` or ``cancel``;
        ``cart_create``, ``cart_get``, ``cart_update`` or ``cart_cancel``.
    :ivar session_id: the checkout session id (all but ``create``), or the
        cart id (all cart operations but ``cart_create``).
    :ivar headers: request headers, keys lower-case (``authorization``,
        ``api-version``, ``idempotency-key``, ``content-type``, ``content-encoding``).
    :ivar body: the raw request body (empty for ``get``).
    :ivar scope: what idempotency keys are scoped to besides the agent: the
        REST path (with ``ACP_URL_PREFIX``), which a request signature also covers.
    :ivar language: the language negotiated from the agent's preferences
        (one of :data:`flask_acp.i18n.LANGUAGES`), or None when it stated none.
    :ivar client_address: the client's IP address, counted against
        ``ACP_RATE_LIMIT_PER_IP``; None when the binding counted it already
        (the MCP endpoint does, per HTTP request) or has none (stdio).
    :ivar signature_checked: the binding applied the agent's signature policy
        itself (the MCP endpoint, over the raw HTTP request), or there is no
        request to sign (stdio).
    """

    operation: str
    session_id: str | None = None
    headers: cabc.Mapping[str, str]
    body: bytes = b""
    scope: str
    language: str | None = None
    client_address: str | None = None
    signature_checked: bool = False

    @property
    def method(self) -> str:
        """The REST method of the operation: ``GET``, ``POST`` or ``PUT``."""
        return _METHODS.get(self.operation) or ("POST" if OPERATIONS[self.operation] else "GET")


class Observer(t.Protocol):
    """Told about every response :meth:`Pipeline.handle` returns (metrics,
    :mod:`flask_acp.ops.metrics`). Must be quick; an exception it raises is
    logged and the response sent anyway."""

    def observe(self, request: ApiRequest, version: str | None, response: ApiResponse,
                seconds: float) -> None:
        """One answered request: the negotiated canonical ``version`` (None when
        the request failed before negotiation), the response (a replay carries
        ``Idempotent-Replayed: true``), and the seconds it took."""
        ...


class Pipeline:
    """Authenticate, negotiate, de-duplicate, parse, call, render.

    :param settings: the app's settings (agents, versions, idempotency times).
    :param service: the checkout service.
    :param records: where idempotency records live.
    :param payments: the processor whose handlers sessions advertise.
    :param versions: the wire versions this app serves (API-Version -> plug-in).
    :param limits: the rate limits (None: none).
    :param signatures: the agents' request-signature policies (None: none checked).
    :param observer: told about every response (None: nobody).
    :param carts: the cart service (None: the Cart API is not served, and
        its operations answer 404).
    """

    def __init__(self, *, settings: Settings, service: CheckoutService, records: IdempotencyRecords,
                 payments: PaymentProcessor, versions: cabc.Mapping[str, WireVersion],
                 limits: RateLimits | None = None, signatures: SignatureChecker | None = None,
                 observer: Observer | None = None, carts: CartService | None = None) -> None:
        self.settings = settings
        self.service = service
        self.carts = carts
        self.records = records
        self.payments = payments
        self.limits = limits
        self.signatures = signatures
        self.observer = observer
        self.versions = {v: versions[v] for v in settings.api_versions}
        #: every API-Version string answered (aliases too) -> its plug-in
        self.accepted = {name: wire for wire in self.versions.values()
                         for name in (wire.version, *wire.aliases)}

    # -- the pipeline --------------------------------------------------------------

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Run one operation; every failure becomes the flat error response.
        Log lines written meanwhile carry the agent, session and order ids
        (:func:`flask_acp.logs.bind`)."""
        with logs.scope(checkout_session_id=request.session_id):
            return self._observed(request)

    def _observed(self, request: ApiRequest) -> ApiResponse:
        if self.observer is None:
            return self._handle(request, [])
        started = time.perf_counter()
        negotiated: list[WireVersion] = []
        response = self._handle(request, negotiated)
        try:
            self.observer.observe(request, negotiated[0].version if negotiated else None, response,
                                  time.perf_counter() - started)
        except Exception:
            log.exception("the pipeline's observer failed")
        return response

    def _handle(self, request: ApiRequest, negotiated: list[WireVersion]) -> ApiResponse:
        version: WireVersion | None = None
        try:
            self.check_client(request.client_address)
            agent = self.authenticate(request.headers.get("authorization"))
            logs.bind(agent=agent)
            if self.limits is not None:
                self.limits.check_agent(agent, request.operation, request.session_id)
            if not request.signature_checked:
                self.check_signature(agent, method=request.method, path=request.scope, body=request.body,
                                     headers=request.headers)
            version = self.negotiate(request.headers.get("api-version"))
            negotiated.append(version)
            if request.operation in CART_OPERATIONS:
                self._check_carts(version)
            if not OPERATIONS[request.operation]:
                return self._call(request, agent, version, None)
            optional = request.operation in ("cancel", "cart_cancel")
            body, present = read_json(request.body, content_type=request.headers.get("content-type"),
                                      content_encoding=request.headers.get("content-encoding"),
                                      optional=optional)
            key = request.headers.get("idempotency-key")
            if not key and not version.idempotency_key_required:
                return self._call(request, agent, version, body)
            return run_idempotent(
                records=self.records,
                scope=f"{agent} {request.scope}",
                key=key,
                # the version is part of the request: a stored response is in the
                # version it was made in, so the same key in another version is a
                # conflict, never a replay the agent could not read
                body_fingerprint=f"{version.version}:{fingerprint(body, present=present)}",
                lease=self.settings.idempotency_lease,
                retention=self.settings.idempotency_ttl,
                handler=lambda: self._call(request, agent, version, body),
            )
        except IdempotencyConflictError as exc:
            return error_response(exc, status=version.idempotency_conflict_status if version else None)
        except ACPError as exc:
            return error_response(exc)

    def check_client(self, address: str | None) -> None:
        """Count one request of the client ``address`` (before authentication).

        :raises RateLimitedError: over ``ACP_RATE_LIMIT_PER_IP`` (429).
        """
        if self.limits is not None:
            self.limits.check_client(address)

    def check_signature(self, agent: str, *, method: str, path: str, body: bytes,
                        headers: cabc.Mapping[str, str]) -> None:
        """Apply ``agent``'s signature policy to a request (lower-case ``headers``).

        :raises SignatureError: policy ``strict`` and no valid, fresh, unseen
            signature (401 ``invalid_signature``).
        """
        if self.signatures is not None:
            self.signatures.check(agent, method=method, path=path, body=body,
                                  signature=headers.get("signature"), timestamp=headers.get("timestamp"))

    def authenticate(self, authorization: str | None) -> str:
        """The agent whose key is in ``Authorization: Bearer <key>``.

        :raises AuthenticationError: missing or unknown key.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Send 'Authorization: Bearer <api key>'.")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found: str | None = None
        for name, key_digest in _key_digests(self.settings.agents):
            if hmac.compare_digest(digest, key_digest):
                found = name
        if found is None:
            raise AuthenticationError("The API key is not valid.",
                                      challenge='Bearer realm="acp", error="invalid_token"')
        return found

    def negotiate(self, api_version: str | None) -> WireVersion:
        """The plug-in of the requested ``API-Version``.

        :raises APIVersionError: missing or not served (lists ``supported_versions``).
        """
        supported = list(self.settings.api_versions)
        version = (api_version or "").strip()
        if not version:
            raise APIVersionError("The API-Version header is required.", code="missing_api_version",
                                  extra={"supported_versions": supported})
        if version not in self.accepted:
            raise APIVersionError(f"API-Version '{version}' is not supported.",
                                  code="unsupported_api_version", extra={"supported_versions": supported})
        return self.accepted[version]

    def _check_carts(self, version: WireVersion) -> None:
        """The Cart API is served, and in this version.

        :raises NotFoundError: carts are not enabled (``ACP_CARTS_ENABLED``).
        :raises APIVersionError: ``version`` has no carts (before 2026-04-17);
            ``supported_versions`` lists the served versions that have them.
        """
        if self.carts is None:
            raise NotFoundError("This merchant does not offer the Cart API.")
        if not version.has_carts:
            with_carts = [name for name, wire in self.versions.items() if wire.has_carts]
            raise APIVersionError(f"Carts are not part of API-Version '{version.version}'; use "
                                  f"{' or '.join(with_carts)}.", code="unsupported_api_version",
                                  extra={"supported_versions": with_carts})

    # -- calling the core ----------------------------------------------------------

    def _call(self, request: ApiRequest, agent: str, version: WireVersion, body: t.Any) -> ApiResponse:
        if request.operation in CART_OPERATIONS:
            return self._call_carts(request, agent, version, body)
        try:
            data: t.Any = None if body is None else load(_schema(version, request.operation), body)
            session_id = request.session_id or ""
            service = self.service
            status = 200
            if request.operation == "create":
                session, status = service.create(agent, version.version, data), 201
            elif request.operation == "update":
                session = service.update(agent, session_id, data)
            elif request.operation == "get":
                session = service.get(agent, session_id)
            elif request.operation == "complete":
                key = request.headers.get("idempotency-key") or None
                session = service.complete(agent, session_id, dataclasses.replace(data, idempotency_key=key))
            else:
                session = service.cancel(agent, session_id, data)
        except ACPError as exc:
            return error_response(exc)
        logs.bind(checkout_session_id=session.id, order_id=session.order.id if session.order else None)
        return self.render(session, version, request.language, status)

    def _call_carts(self, request: ApiRequest, agent: str, version: WireVersion, body: t.Any) -> ApiResponse:
        carts = t.cast(CartService, self.carts)  # checked by _check_carts
        render = t.cast(RenderCart, version.render_cart)
        cart_id = request.session_id or ""
        status = 200
        try:
            if request.operation == "cart_create":
                data = load(_schema(version, "cart_create", carts=True), body)
                cart, status = carts.create(agent, data), 201
            elif request.operation == "cart_update":
                cart = carts.update(agent, cart_id, load(_schema(version, "cart_update", carts=True), body))
            elif request.operation == "cart_get":
                cart = carts.get(agent, cart_id)
            else:
                cart = carts.cancel(agent, cart_id)
        except ACPError as exc:
            return error_response(exc)
        language = request.language or _language_of(cart.locale)
        template = self.settings.cart_continue_url
        body_out = render(cart, language=language,
                          continue_url=template.format(cart_id=cart.id) if template else None)
        return json_response(body_out, status, {"Content-Language": language})

    def render(self, session: CheckoutSession, version: WireVersion, language: str | None,
               status: int = 200) -> ApiResponse:
        """The session in ``version``, texts in ``language`` (else the
        session's own locale when we speak it, else English)."""
        if language is None:
            language = _language_of(session.locale)
        body = version.render_session(
            session,
            handlers=self.payments.handlers(),
            interventions=self.settings.interventions,
            links=self.settings.links,
            language=language,
        )
        return json_response(body, status, {"Content-Language": language})


@functools.cache
def _key_digests(agents: tuple[Agent, ...]) -> tuple[tuple[str, bytes], ...]:
    """(agent name, SHA-256 of one of its keys) for every configured key."""
    return tuple((agent.name, hashlib.sha256(key.encode()).digest())
                 for agent in agents for key in agent.api_keys)


def _language_of(locale: str | None) -> str:
    """The language of a session's or cart's ``locale`` when we speak it, else English."""
    if locale:
        primary = locale.replace("_", "-").split("-")[0].lower()
        if primary in i18n.LANGUAGES:
            return primary
    return "en"


@functools.cache
def _schema(version: WireVersion, operation: str, *, carts: bool = False) -> Schema:
    """One (thread-safe, stateless) schema instance per version and operation."""
    return (version.cart_schemas if carts else version.request_schemas)[operation]()
