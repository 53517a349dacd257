"""What the checkout operations take: version-independent inputs, already
validated (each wire version's request schemas build them; the core never
sees a request body)."""

from __future__ import annotations

import dataclasses

from .models import JSON
from .models import LineItemRequest
from .models import SelectedFulfillmentOption


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreateInput:
    """``currency`` is None when the version's create request has none
    (before 2026-01-30): the store's default currency is used."""

    currency: str | None
    line_items: tuple[LineItemRequest, ...]
    capabilities: dict[str, JSON]
    buyer: dict[str, JSON] | None = None
    fulfillment_details: dict[str, JSON] | None = None
    locale: str | None = None
    order_notes: str | None = None
    #: ``discounts.codes`` (or the deprecated ``coupons``) as sent; None: not sent
    discount_codes: tuple[str, ...] | None = None
    #: the first-touch ``AffiliateAttribution`` (write-only), validated, PII-free
    affiliate_attribution: dict[str, JSON] | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UpdateInput:
    """Fields the agent sent; ``None`` means "not sent, keep as is". Sent
    values replace the stored ones whole (no merging)."""

    line_items: tuple[LineItemRequest, ...] | None = None
    buyer: dict[str, JSON] | None = None
    fulfillment_details: dict[str, JSON] | None = None
    selected_fulfillment_options: tuple[SelectedFulfillmentOption, ...] | None = None
    order_notes: str | None = None
    #: ``discounts.codes`` (or ``coupons``): replaces the session's codes; ``()`` clears them
    discount_codes: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CompleteInput:
    """``handler_id`` is None when the version names a PSP instead of a handler
    (``payment_data.provider`` before 2026-01-30): the processor's
    delegated-token card handler of that ``psp`` is used, with its instrument
    and credential types. ``authentication_result`` is the 3-D Secure
    ``AuthenticationResult`` the agent sent (2025-12-12+), handed to the
    payment processor as is."""

    handler_id: str | None
    instrument_type: str | None
    credential_type: str | None
    token: str
    psp: str | None = None
    authentication_result: dict[str, JSON] | None = None
    buyer: dict[str, JSON] | None = None
    billing_address: dict[str, JSON] | None = None
    order_notes: str | None = None
    #: the last-touch ``AffiliateAttribution`` (write-only), validated, PII-free
    affiliate_attribution: dict[str, JSON] | None = None
    #: ``marketing_consents[]``: ``(channel, opted_in)`` in request order
    marketing_consents: tuple[tuple[str, bool], ...] = ()
    #: the request's ``Idempotency-Key``: a retry with it of a completion that
    #: committed (its answer lost in a crash) gets the completed session back
    idempotency_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CancelInput:
    reason_code: str | None = None
    trace_summary: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CartInput:
    """A cart's full desired state (create, and update: a full replacement)."""

    line_items: tuple[LineItemRequest, ...]
    buyer: dict[str, JSON] | None = None
    locale: str | None = None
