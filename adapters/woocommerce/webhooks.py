# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""Order status sync, pure functions (no HTTP): verifying WooCommerce webhooks
and turning a REST v3 order into a :class:`~flask_acp.adapter.PlatformOrderUpdate`.

Used by :meth:`.WooCommerceAdapter.parse_webhook` (``order.updated`` /
``order.created`` deliveries, whose body *is* the REST v3 order) and by
:meth:`.WooCommerceAdapter.reconcile_orders` (the same orders, polled).

**Verification** (platforms.md §3.7): ``X-WC-Webhook-Signature`` is
``base64(HMAC-SHA256(secret, raw body))``; WooCommerce keys the HMAC with the
secret passed through ``wp_specialchars_decode``, so both the secret as
configured and its decoded form are accepted. The ping WooCommerce sends when a
webhook is created or re-activated is a form body ``webhook_id=<n>`` with no
signature: :func:`is_ping`.

**De-duplication key** (:func:`event_key`): ``order:{id}:{date_modified_gmt}:{sha256(body)[:16]}``.
``X-WC-Webhook-Delivery-ID`` is new for every delivery attempt, so it cannot
recognise a second delivery of the same change. WooCommerce builds the payload
when it delivers (the order as it is then), and ``date_modified`` has one-second
resolution, so two changes in the same second share it: the body digest tells
them apart, while a repeated delivery of the same order state (a resend, two
webhooks configured for the same URL, ``order.created`` and ``order.updated``
of one save) has the same key and is processed once. The webhook id is left
out on purpose, for that last case. Applying an update is idempotent anyway;
the key only saves the work.

**Mapping** (:func:`order_update`), only for orders we made (the
``_acp_checkout_session_id`` meta the adapter writes before payment):

=================  ===============================================================
WooCommerce        ACP
=================  ===============================================================
``checkout-draft``,  ignored (not paid: not an order yet)
``pending``,
``failed``, trash
``processing``     ``confirmed`` (paid, awaiting fulfilment: the status the
                   order was created with, so a ``manual_review`` order returns
                   to it); no status at all once tracking exists (the shipment
                   makes the order ``shipped``)
``on-hold``        ``manual_review``
``completed``      ``completed``: WooCommerce's "order fulfilled and complete".
                   Without any tracking item, one untracked fulfilment
                   ``wc-{order id}-completed`` (status ``shipped``) covers every
                   unit, so the lines read ``fulfilled``; ``shipped`` and not
                   ``delivered`` because merchants commonly complete orders at
                   dispatch and WooCommerce cannot know the delivery
``cancelled``      ``canceled`` (no money moves: as in WooCommerce, cancelling is
                   not refunding; the merchant refunds in WooCommerce)
``refunded``       no status change; the refunds below give the money back
other (plugins)    no status change; refunds and tracking still apply
=================  ===============================================================

* ``refunds[]`` (``{id, reason, total: "-5.00"}``, a negative decimal string)
  become :class:`~flask_acp.adapter.PlatformRefund` (``abs`` of the amount in ISO
  minor units, :func:`.mapping.rest_amount`; zero-amount refunds, which only
  restock, are skipped). flask-acp refunds them through the payment processor,
  once per WooCommerce refund id (WooCommerce never held the money).
* Shipment tracking: the Shipment Tracking extension's order meta
  ``_wc_shipment_tracking_items`` (``[{tracking_id, tracking_provider,
  custom_tracking_provider, custom_tracking_link, tracking_number,
  date_shipped}]``). Each item is a fulfilment ``wc-trk-{tracking_id}``, status
  ``shipped``, with carrier, number and link (a link is built for a few
  well-known provider slugs). Items name no lines, so each reports every unit
  of the order; the core gives a shipment only the units not shipped yet, so
  the first item carries them and later ones add their tracking numbers. The
  core Fulfillments API of WooCommerce 10.1+ (``/orders/{id}/fulfillments``, a
  separate route, not in the webhook body) is not read.
"""

from __future__ import annotations

import base64
import collections.abc as cabc
import hashlib
import hmac
import logging
import urllib.parse

from flask_acp.adapter import FulfillmentUpdate
from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformRefund
from flask_acp.models import JSON
from flask_acp.models import line_item_id

from .mapping import PriceNotRepresentable
from .mapping import plain_text
from .mapping import rest_amount

__all__ = [
    "IGNORED_STATUSES",
    "SESSION_META_KEY",
    "STATUS_MAP",
    "TRACKING_META_KEY",
    "event_key",
    "is_ping",
    "order_update",
    "product_subjects",
    "signature",
    "signature_matches",
    "tracking_fulfillments",
    "wp_specialchars_decode",
]

log = logging.getLogger("flask_acp.woocommerce")

#: order meta key holding the ACP checkout session id (written by ``prepare_order``).
SESSION_META_KEY = "_acp_checkout_session_id"
#: order meta key of the Shipment Tracking extension.
TRACKING_META_KEY = "_wc_shipment_tracking_items"
#: WooCommerce order status -> ACP order status (see the module docstring).
STATUS_MAP: dict[str, str] = {"processing": "confirmed", "on-hold": "manual_review",
                              "completed": "completed"}
#: statuses of orders that are not paid orders (yet): no update at all.
IGNORED_STATUSES = frozenset({"checkout-draft", "pending", "failed", "trash", "auto-draft", "draft"})
#: Shipment Tracking provider slugs -> (carrier name, tracking URL with ``{}`` for the number).
_PROVIDERS: dict[str, tuple[str, str]] = {
    "usps": ("USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
    "ups": ("UPS", "https://www.ups.com/track?tracknum={}"),
    "fedex": ("FedEx", "https://www.fedex.com/fedextrack/?trknbr={}"),
    "dhl-us": ("DHL US", "https://www.dhl.com/us-en/home/tracking.html?tracking-id={}"),
}


# --- verification -------------------------------------------------------------------


def wp_specialchars_decode(text: str) -> str:
    """WordPress's ``wp_specialchars_decode(text, ENT_QUOTES)``: the five entities only."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"),
                         ("&#39;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def signature(secret: str, body: bytes) -> str:
    """``X-WC-Webhook-Signature`` of ``body``: base64 of its HMAC-SHA256 keyed by
    the secret (decoded as WooCommerce does)."""
    key = wp_specialchars_decode(secret).encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def signature_matches(secrets: cabc.Iterable[str], body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` under one of ``secrets``
    (each as configured, or decoded with :func:`wp_specialchars_decode`)."""
    given = header.strip().encode()
    for secret in secrets:
        for key in dict.fromkeys((secret, wp_specialchars_decode(secret))):
            expected = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest())
            if hmac.compare_digest(expected, given):
                return True
    return False


def is_ping(body: bytes) -> bool:
    """The unsigned ping of a new webhook: exactly the form body ``webhook_id=<digits>``."""
    try:
        fields = urllib.parse.parse_qs(body.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return False
    ids = fields.get("webhook_id")
    return set(fields) == {"webhook_id"} and ids is not None and len(ids) == 1 and ids[0].isdigit()


def event_key(order: cabc.Mapping[str, JSON], body: bytes) -> str:
    """The de-duplication key of a delivery of ``order`` (see the module docstring)."""
    modified = order.get("date_modified_gmt") or order.get("date_modified") or ""
    return f"order:{order.get('id')}:{modified}:{hashlib.sha256(body).hexdigest()[:16]}"


def product_subjects(product: cabc.Mapping[str, JSON]) -> tuple[str, ...]:
    """The product a ``product.*`` delivery is about (a REST v3 product, or a
    variation: its ``parent_id``), for an incremental feed update."""
    parent, own = product.get("parent_id"), product.get("id")
    chosen = parent if isinstance(parent, int) and parent > 0 else own
    return (str(chosen),) if isinstance(chosen, int) and chosen > 0 else ()


# --- mapping ------------------------------------------------------------------------


def _meta(order: cabc.Mapping[str, JSON], key: str) -> JSON:
    for entry in order.get("meta_data") or []:
        if isinstance(entry, dict) and entry.get("key") == key:
            return entry.get("value")
    return None


def order_units(order: cabc.Mapping[str, JSON]) -> dict[str, int]:
    """Order line id (``line_item_id`` of the ACP item id: the variation id, or
    the product id of a simple product) -> units, from ``line_items``."""
    units: dict[str, int] = {}
    for line in order.get("line_items") or []:
        if not isinstance(line, dict):
            continue
        item_id = line.get("variation_id") or line.get("product_id")
        quantity = line.get("quantity")
        if not item_id or not isinstance(quantity, int) or quantity <= 0:
            continue
        key = line_item_id(str(item_id))
        units[key] = units.get(key, 0) + quantity
    return units


def tracking_fulfillments(order: cabc.Mapping[str, JSON]) -> tuple[FulfillmentUpdate, ...]:
    """One ``shipped`` fulfilment per Shipment Tracking item (see the module docstring)."""
    items = _meta(order, TRACKING_META_KEY)
    if not isinstance(items, list):
        return ()
    units = order_units(order)
    out: list[FulfillmentUpdate] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        number = str(item.get("tracking_number") or "").strip()
        slug = str(item.get("tracking_provider") or "").strip().lower()
        custom = plain_text(item.get("custom_tracking_provider"))
        known = _PROVIDERS.get(slug)
        carrier = custom or (known[0] if known else slug) or None
        link = str(item.get("custom_tracking_link") or "").strip()
        if not link and known and number and not custom:
            link = known[1].format(urllib.parse.quote(number, safe=""))
        tracking_id = str(item.get("tracking_id") or "").strip() or hashlib.sha256(
            f"{slug}|{custom}|{number}".encode()).hexdigest()[:16]
        out.append(FulfillmentUpdate(
            id=f"wc-trk-{tracking_id}", status="shipped", line_items=dict(units), carrier=carrier,
            tracking_number=number or None,
            tracking_url=link if link.startswith(("https://", "http://")) else None))
    return tuple(out)


def order_refunds(order: cabc.Mapping[str, JSON]) -> tuple[PlatformRefund, ...]:
    """The order's ``refunds[]`` in ISO minor units (absolute values), oldest first."""
    currency = str(order.get("currency") or "")
    out: list[PlatformRefund] = []
    for refund in order.get("refunds") or []:
        if not isinstance(refund, dict) or refund.get("id") in (None, ""):
            continue
        try:
            amount = abs(rest_amount(refund.get("total"), currency))
        except (PriceNotRepresentable, ValueError) as exc:
            log.warning("WooCommerce order %s: refund %s not read: %s", order.get("id"),
                        refund.get("id"), exc)
            continue
        if amount == 0:
            continue
        out.append(PlatformRefund(id=str(refund["id"]), amount=amount,
                                  reason=plain_text(refund.get("reason")) or None))
    return tuple(sorted(out, key=lambda r: (len(r.id), r.id)))


def order_update(order: cabc.Mapping[str, JSON]) -> PlatformOrderUpdate | None:
    """What a REST v3 order says about one of our orders, or ``None`` when it is
    not ours (no session meta) or not a paid order (see the module docstring)."""
    session_id = _meta(order, SESSION_META_KEY)
    status = str(order.get("status") or "")
    if not isinstance(session_id, str) or not session_id or not order.get("id") or status in IGNORED_STATUSES:
        return None
    fulfillments = tracking_fulfillments(order)
    acp_status = STATUS_MAP.get(status)
    if status == "processing" and fulfillments:
        acp_status = None
    units = order_units(order)
    if status == "completed" and not fulfillments and units:
        fulfillments = (FulfillmentUpdate(id=f"wc-{order['id']}-completed", status="shipped",
                                          line_items=units),)
    return PlatformOrderUpdate(
        checkout_session_id=session_id,
        platform_order_id=str(order["id"]),
        status=acp_status,
        canceled=status == "cancelled",
        fulfillments=fulfillments,
        refunds=order_refunds(order),
    )
