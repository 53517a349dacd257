"""What a wire-version plug-in provides (no Flask, no store).

A version turns request bodies into the core's version-free inputs and the
core's objects into that version's JSON; nothing else in flask-acp knows a
version's field names.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import typing as t

from marshmallow import Schema

from ..models import JSON
from ..models import Cart
from ..models import CheckoutSession
from ..models import Order
from ..payments.base import PaymentHandler


class RenderSession(t.Protocol):
    def __call__(self, session: CheckoutSession, *, handlers: cabc.Sequence[PaymentHandler],
                 interventions: tuple[str, ...], links: tuple[dict[str, str], ...],
                 language: str) -> dict[str, JSON]: ...


class RenderDiscovery(t.Protocol):
    def __call__(self, *, api_base_url: str, supported_versions: tuple[str, ...], currencies: list[str],
                 interventions: tuple[str, ...], languages: tuple[str, ...]) -> dict[str, JSON]: ...


class RenderCart(t.Protocol):
    def __call__(self, cart: Cart, *, language: str, continue_url: str | None = None) -> dict[str, JSON]: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WireVersion:
    """One ACP version.

    :ivar version: the ``API-Version`` string (``2026-04-17``).
    :ivar request_schemas: operation (``create``, ``update``, ``complete``,
        ``cancel``) -> marshmallow schema whose ``load`` returns the core input
        (:class:`~flask_acp.checkout.CreateInput`...).
    :ivar render_session: the ``CheckoutSession`` response body.
    :ivar render_order: the ``Order`` object of webhooks.
    :ivar render_event: ``(event type, order)`` -> the webhook body.
    :ivar render_discovery: the ``/.well-known/acp.json`` body.
    :ivar aliases: other ``API-Version`` strings answered with this version
        (``2025-09-12`` for ``2025-09-29``).
    :ivar idempotency_key_required: POSTs without ``Idempotency-Key`` are
        refused (400 ``idempotency_key_required``; 2026-04-17); else they run
        without replay protection, as the version allows.
    :ivar idempotency_conflict_status: HTTP status of ``idempotency_conflict``
        (same key, other body): 409 before 2026-04-17, 422 from it.
    :ivar webhook_signature: how ``Merchant-Signature`` is computed:
        ``timestamped`` (``t=<unix>,v1=<hex HMAC(secret, "t.body")>``,
        2026-04-17) or ``body`` (hex HMAC-SHA256 of the raw body, with an RFC
        3339 ``Timestamp`` header; the versions before, which fix no format).
    :ivar cart_schemas: the Cart API's request schemas (``cart_create``,
        ``cart_update``; loads return :class:`~flask_acp.inputs.CartInput`);
        empty in a version without carts (before 2026-04-17).
    :ivar render_cart: the ``Cart`` response body; None without carts.
    """

    version: str
    request_schemas: cabc.Mapping[str, type[Schema]]
    render_session: RenderSession
    render_order: cabc.Callable[[Order], dict[str, JSON]]
    render_event: cabc.Callable[[str, Order], dict[str, JSON]]
    render_discovery: RenderDiscovery
    aliases: tuple[str, ...] = ()
    idempotency_key_required: bool = True
    idempotency_conflict_status: int = 422
    webhook_signature: t.Literal["timestamped", "body"] = "timestamped"
    cart_schemas: cabc.Mapping[str, type[Schema]] = dataclasses.field(default_factory=dict)
    render_cart: RenderCart | None = None

    @property
    def has_carts(self) -> bool:
        """Whether this version defines the Cart API."""
        return self.render_cart is not None
