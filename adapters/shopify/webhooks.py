# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""Order status sync, pure functions (no HTTP): verifying Shopify webhooks and
turning what Shopify says about an order into a
:class:`~flask_acp.adapter.PlatformOrderUpdate`.

Two sources, one mapping:

* **webhooks** (:func:`webhook_updates`): REST-shaped snake_case JSON of the
  subscription's API version (platforms.md §2.3 "order status sync", §2.8
  pitfall 8): ``orders/updated``, ``orders/cancelled``, ``orders/fulfilled``,
  ``orders/partially_fulfilled`` carry the order (with its ``fulfillments`` and
  ``refunds``); ``fulfillments/create`` and ``fulfillments/update`` a
  fulfillment with ``order_id``; ``refunds/create`` a refund with ``order_id``.
  Other topics are acknowledged and ignored.
* **reconcile** (:func:`order_node_update`): the ``AcpOrderSync`` fragment of
  :data:`.queries.ORDERS_CHANGED` (Admin GraphQL, enums in upper case).

**Verification** (platforms.md §2.7): ``X-Shopify-Hmac-Sha256`` is
``base64(HMAC-SHA256(secret, raw body))`` with the app's client secret (or the
key shown in the admin for webhooks made there), compared in constant time
before any JSON is read (:func:`signature_matches`).

**De-duplication key** (:func:`event_key`): ``{topic}:{SHA-256 of the raw
body}``. The body is what the signature covers; the event-id headers are not
signed, so a replayed body with a fresh ``X-Shopify-Event-Id`` is still the
same delivery. The topic is part of the key so that one change reported under
several topics is never mistaken for a duplicate. Applying an update is
idempotent anyway, and a fulfillment report older (``updated_at``) than the
state already applied changes nothing (see ``flask_acp.orders``): a replayed
old body can never move a delivered shipment back.

**Whose order**: ``platform_order_id`` is always the order GID (the adapter
stored it as ``Order.platform_order_id``; for the fulfillment and refund topics
``gid://shopify/Order/{order_id}``); ``checkout_session_id`` is the
``acp_checkout_session_id`` note attribute the draft carried. Order payloads
without that attribute and without the ``acp`` tag give no update.

**Mapping**

============================  =============================================================
Shopify                       ACP
============================  =============================================================
``cancelled_at`` set          ``canceled`` (no money moves by itself: a refund made with
                              the cancellation arrives as a refund, below)
fulfillment ``id``            fulfillment id: the GID (``admin_graphql_api_id``,
                              ``gid://shopify/Fulfillment/N``), the same from both sources
fulfillment status            :func:`fulfillment_status` (``status`` and ``shipment_status``
                              / ``displayStatus``)
``tracking_company``,         ``carrier``, ``tracking_number``, ``tracking_url`` (the first
``tracking_number(s)``,       of each; GraphQL: the first ``trackingInfo``)
``tracking_url(s)``
fulfillment ``line_items``    order line id -> units: see *line ids* below
refund                        :class:`~flask_acp.adapter.PlatformRefund` ``id`` = the
                              refund's numeric id, ``amount`` = the sum of its successful
                              ``refund`` transactions in minor units (:func:`.mapping.to_minor`,
                              ``Decimal`` only, in the transaction's currency, the order's
                              presentment currency), ``reason`` = its note. Refunds that move
                              no money (restock only) are skipped.
order status                  not set: the core derives ``shipped`` / ``completed`` from
                              the fulfillments (setting ``processing`` from Shopify's
                              order-level status could move a shipped order backwards)
============================  =============================================================

**Line ids**: the core's order line id is ``line_item_id(item_id)`` of the item
id the agent used, which for this adapter is the numeric variant id (``"4449"``,
the product feed's form) or the variant GID. A Shopify line names only its
variant, so each fulfilled line reports its units under both forms; the core
counts the units of the form the order has and ignores the other (an item id
in any other spelling, e.g. with leading zeros, gets no fulfilled units).
"""

from __future__ import annotations

import base64
import collections.abc as cabc
import datetime as dt
import hashlib
import hmac
import logging
import typing as t

from flask_acp.adapter import FulfillmentUpdate
from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformRefund
from flask_acp.models import JSON
from flask_acp.models import line_item_id

from . import mapping

__all__ = [
    "FULFILLMENT_STATUSES",
    "ORDER_GID_PREFIX",
    "ORDER_TOPICS",
    "SESSION_ATTRIBUTE",
    "SHIPMENT_STATUSES",
    "TAG",
    "PRODUCT_TOPICS",
    "TOPICS",
    "event_key",
    "fulfillment_status",
    "line_ids",
    "order_node_update",
    "rest_order_update",
    "signature",
    "signature_matches",
    "webhook_updates",
]

log = logging.getLogger("flask_acp.shopify")

#: the draft (and so order) custom attribute holding the ACP checkout session id;
#: REST payloads call it a note attribute (``note_attributes[{name, value}]``).
SESSION_ATTRIBUTE = "acp_checkout_session_id"
#: the tag on every draft (and so every order) flask-acp creates.
TAG = "acp"
#: prefix of an order's global id.
ORDER_GID_PREFIX = "gid://shopify/Order/"
_FULFILLMENT_GID_PREFIX = "gid://shopify/Fulfillment/"
#: topics whose payload is the order.
ORDER_TOPICS = frozenset({"orders/updated", "orders/cancelled", "orders/fulfilled",
                          "orders/partially_fulfilled"})
#: every topic this module maps (subscribe the app to these).
TOPICS: tuple[str, ...] = ("orders/updated", "orders/cancelled", "orders/fulfilled",
                           "orders/partially_fulfilled", "fulfillments/create", "fulfillments/update",
                           "refunds/create")

#: catalog topics: the product feed gets a ``PATCH`` of the product concerned
#: (:func:`webhook_products`).
PRODUCT_TOPICS: tuple[str, ...] = ("products/create", "products/update", "products/delete",
                                   "inventory_levels/update")

#: fulfillment ``status`` (REST lower case, GraphQL ``FulfillmentStatus`` upper case)
#: -> ACP fulfillment status, for statuses that decide it alone.
FULFILLMENT_STATUSES: dict[str, str] = {
    "cancelled": "canceled",
    "error": "failed",
    "failure": "failed",
    "pending": "pending",  # legacy: waiting for a fulfillment service
    "open": "pending",  # legacy: acknowledged by the service, not shipped
}
#: a successful fulfillment's ``shipment_status`` (REST) / ``displayStatus`` (GraphQL)
#: -> ACP fulfillment status; anything else (none yet, ``confirmed``, labels) is ``shipped``.
SHIPMENT_STATUSES: dict[str, str] = {
    "in_transit": "in_transit",
    "carrier_picked_up": "in_transit",
    "delayed": "in_transit",
    "attempted_delivery": "in_transit",  # the carrier tries again
    "out_for_delivery": "out_for_delivery",
    "ready_for_pickup": "out_for_delivery",  # waiting at a pickup point: the last leg
    "delivered": "delivered",
    "picked_up": "delivered",  # collected by the buyer
    "failure": "failed",
    "not_delivered": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
}


# --- verification -------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256`` of ``body``: base64 of its HMAC-SHA256 keyed by ``secret``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signature_matches(secrets: cabc.Iterable[str], body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` under one of
    ``secrets`` (constant-time comparison)."""
    given = header.strip().encode()
    return any(hmac.compare_digest(signature(secret, body).encode(), given) for secret in secrets)


def event_key(topic: str, body: bytes) -> str:
    """The de-duplication key of a delivery: its topic and the SHA-256 of its
    signed raw body (see the module docstring)."""
    return f"{topic}:{hashlib.sha256(body).hexdigest()}"


# --- mapping ------------------------------------------------------------------------


def fulfillment_status(status: JSON, shipment_status: JSON = None) -> str:
    """The ACP status of a fulfillment from its ``status`` and, once it
    succeeded, its ``shipment_status`` (REST) or ``displayStatus`` (GraphQL);
    case-insensitive (see :data:`FULFILLMENT_STATUSES`, :data:`SHIPMENT_STATUSES`)."""
    decided = FULFILLMENT_STATUSES.get(str(status or "").lower())
    if decided is not None:
        return decided
    return SHIPMENT_STATUSES.get(str(shipment_status or "").lower(), "shipped")


def line_ids(variant_id: JSON) -> tuple[str, ...]:
    """The order line ids a Shopify line of ``variant_id`` (number, digits or
    GID) may have in the ACP order: for item id ``"4449"`` and for its GID
    (see *line ids* in the module docstring); ``()`` for a custom line."""
    if variant_id is None or isinstance(variant_id, bool):
        return ()
    gid = mapping.variant_gid(str(variant_id))
    if gid is None:
        return ()
    return (line_item_id(mapping.gid_tail(gid)), line_item_id(gid))


def _units(pairs: cabc.Iterable[tuple[JSON, JSON]]) -> dict[str, int]:
    """Order line id -> units from ``(variant id, quantity)`` pairs."""
    units: dict[str, int] = {}
    for variant_id, quantity in pairs:
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            continue
        for key in line_ids(variant_id):
            units[key] = units.get(key, 0) + quantity
    return units


def _timestamp(value: JSON) -> dt.datetime | None:
    """An ISO 8601 time with its offset (``2026-12-04T10:00:00-05:00``), or None."""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _text(value: JSON) -> str | None:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return text or None


def _first(value: JSON) -> str | None:
    if isinstance(value, list):
        return next((text for text in map(_text, value) if text), None)
    return _text(value)


def _gid(value: JSON, prefix: str) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return text if text.startswith("gid://") else prefix + text


def _rest_fulfillment(data: cabc.Mapping[str, JSON]) -> FulfillmentUpdate | None:
    fid = _gid(data.get("admin_graphql_api_id"), _FULFILLMENT_GID_PREFIX) \
        or _gid(data.get("id"), _FULFILLMENT_GID_PREFIX)
    if fid is None:
        return None
    lines = [line for line in t.cast(list[JSON], data.get("line_items") or []) if isinstance(line, dict)]
    url = _first(data.get("tracking_urls")) or _text(data.get("tracking_url"))
    return FulfillmentUpdate(
        id=fid, status=fulfillment_status(data.get("status"), data.get("shipment_status")),
        updated_at=_timestamp(data.get("updated_at")),
        line_items=_units((line.get("variant_id"), line.get("quantity")) for line in lines),
        carrier=_text(data.get("tracking_company")),
        tracking_number=_first(data.get("tracking_numbers")) or _text(data.get("tracking_number")),
        tracking_url=url if url and url.startswith(("https://", "http://")) else None)


def _refund(refund_id: str | None, note: JSON, transactions: cabc.Iterable[JSON], *,
            currency: str | None, order: JSON) -> PlatformRefund | None:
    """A refund from its transactions: ``(kind, status, amount, currency)`` read
    from REST (``amount`` string + ``currency``) or GraphQL (``amountSet``)."""
    if refund_id is None:
        return None
    total = 0
    for txn in transactions:
        if not isinstance(txn, dict):
            continue
        kind, status = str(txn.get("kind") or "").lower(), str(txn.get("status") or "").lower()
        if kind != "refund" or status != "success":
            continue
        try:
            if isinstance(txn.get("amountSet"), dict):
                if not currency:
                    raise mapping.CurrencyMismatchError("the order's presentment currency is unknown")
                total += mapping.money(t.cast(dict[str, JSON], txn["amountSet"]), currency)
            else:
                code = _text(txn.get("currency")) or currency
                if not code:
                    raise mapping.CurrencyMismatchError("the transaction names no currency")
                if currency and code.upper() != currency.upper():
                    raise mapping.CurrencyMismatchError(
                        f"refund transaction in {code}, the order is in {currency.upper()}")
                total += mapping.to_minor(t.cast(str, txn.get("amount") or "0"), code)
        except (mapping.AmountNotRepresentableError, mapping.CurrencyMismatchError) as exc:
            log.warning("Shopify order %s: refund %s not read: %s", order, refund_id, exc)
            return None
    if total <= 0:
        return None  # restock only, or nothing successful yet
    return PlatformRefund(id=refund_id, amount=total, reason=_text(note))


def _rest_refund(data: cabc.Mapping[str, JSON], currency: str | None) -> PlatformRefund | None:
    refund_id = _text(data.get("id")) or (mapping.gid_tail(str(data["admin_graphql_api_id"]))
                                          if data.get("admin_graphql_api_id") else None)
    return _refund(refund_id, data.get("note"), t.cast(list[JSON], data.get("transactions") or []),
                   currency=currency, order=data.get("order_id"))


def _attribute(pairs: JSON, name_key: str) -> str | None:
    for pair in t.cast(list[JSON], pairs or []):
        if isinstance(pair, dict) and pair.get(name_key) == SESSION_ATTRIBUTE:
            return _text(pair.get("value"))
    return None


def _tags(value: JSON) -> set[str]:
    if isinstance(value, str):
        return {tag.strip() for tag in value.split(",")}
    return {str(tag).strip() for tag in t.cast(list[JSON], value or [])}


def rest_order_update(order: cabc.Mapping[str, JSON]) -> PlatformOrderUpdate | None:
    """What an order payload (REST) says about one of our orders, or ``None``
    when it is not ours (see the module docstring)."""
    session_id = _attribute(order.get("note_attributes"), "name")
    order_id = _gid(order.get("admin_graphql_api_id"), ORDER_GID_PREFIX) \
        or _gid(order.get("id"), ORDER_GID_PREFIX)
    if order_id is None or (session_id is None and TAG not in _tags(order.get("tags"))):
        return None
    currency = _text(order.get("presentment_currency")) or _text(order.get("currency"))
    fulfillments = (_rest_fulfillment(f) for f in t.cast(list[JSON], order.get("fulfillments") or [])
                    if isinstance(f, dict))
    refunds = (_rest_refund(r, currency) for r in t.cast(list[JSON], order.get("refunds") or [])
               if isinstance(r, dict))
    return PlatformOrderUpdate(
        checkout_session_id=session_id, platform_order_id=order_id,
        canceled=bool(order.get("cancelled_at")),
        fulfillments=tuple(f for f in fulfillments if f is not None),
        refunds=tuple(r for r in refunds if r is not None))


def webhook_products(topic: str, payload: JSON) -> tuple[str, ...]:
    """The catalog subjects a verified webhook names, for an incremental feed update:
    ``products/create|update`` (a REST ``Product``) and ``products/delete``
    (``{"id": N}``): its ``gid://shopify/Product/N``;
    ``inventory_levels/update`` (a REST ``InventoryLevel``): the
    ``gid://shopify/InventoryItem/N`` of its ``inventory_item_id`` (the adapter's
    ``read_products`` finds its variant's product). Other topics: none."""
    if not isinstance(payload, dict):
        return ()
    if topic in ("products/create", "products/update", "products/delete"):
        found = _gid(payload.get("id"), "gid://shopify/Product/")
    elif topic == "inventory_levels/update":
        found = _gid(payload.get("inventory_item_id"), "gid://shopify/InventoryItem/")
    else:
        return ()
    return () if found is None else (found,)


#: the resource (its GID type) each order-sync topic's payload is
_TOPIC_RESOURCES: dict[str, str] = {
    **dict.fromkeys(ORDER_TOPICS, "Order"),
    "fulfillments/create": "Fulfillment", "fulfillments/update": "Fulfillment",
    "refunds/create": "Refund"}


def _of_topic(topic: str, payload: cabc.Mapping[str, JSON]) -> bool:
    """Whether the payload is the resource ``topic`` names (its own
    ``admin_graphql_api_id``, when it has one): the topic header is not signed,
    so a signed ``refunds/create`` body re-sent as ``fulfillments/create`` must
    not be read as a shipment."""
    kind = _TOPIC_RESOURCES.get(topic)
    gid = payload.get("admin_graphql_api_id")
    return kind is None or gid is None or str(gid).startswith(f"gid://shopify/{kind}/")


def webhook_updates(topic: str, payload: JSON) -> tuple[PlatformOrderUpdate, ...]:
    """The updates a verified webhook of ``topic`` carries (see the module docstring)."""
    if not isinstance(payload, dict) or not _of_topic(topic, payload):
        return ()
    if topic in ORDER_TOPICS:
        update = rest_order_update(payload)
        return () if update is None else (update,)
    order_id = _gid(payload.get("order_id"), ORDER_GID_PREFIX)
    if order_id is None:
        return ()
    if topic in ("fulfillments/create", "fulfillments/update"):
        fulfillment = _rest_fulfillment(payload)
        return () if fulfillment is None else (
            PlatformOrderUpdate(platform_order_id=order_id, fulfillments=(fulfillment,)),)
    if topic == "refunds/create":
        refund = _rest_refund(payload, None)
        return () if refund is None else (PlatformOrderUpdate(platform_order_id=order_id, refunds=(refund,)),)
    return ()


def order_node_update(node: cabc.Mapping[str, JSON]) -> PlatformOrderUpdate | None:
    """What an ``AcpOrderSync`` node (GraphQL) says about one of our orders, or
    ``None`` when it lacks our session attribute."""
    session_id = _attribute(node.get("customAttributes"), "key")
    order_id = _text(node.get("id"))
    if session_id is None or order_id is None:
        return None
    currency = _text(node.get("presentmentCurrencyCode"))
    fulfillments: list[FulfillmentUpdate] = []
    for item in t.cast(list[JSON], node.get("fulfillments") or []):
        if not isinstance(item, dict) or not _text(item.get("id")):
            continue
        tracking = next((x for x in t.cast(list[JSON], item.get("trackingInfo") or [])
                         if isinstance(x, dict)), {})
        lines = t.cast(list[JSON], (item.get("fulfillmentLineItems") or {}).get("nodes") or [])
        pairs = ((((x.get("lineItem") or {}).get("variant") or {}).get("id"), x.get("quantity"))
                 for x in lines if isinstance(x, dict))
        url = _text(tracking.get("url"))
        fulfillments.append(FulfillmentUpdate(
            id=str(item["id"]), status=fulfillment_status(item.get("status"), item.get("displayStatus")),
            line_items=_units(pairs), carrier=_text(tracking.get("company")),
            tracking_number=_text(tracking.get("number")),
            tracking_url=url if url and url.startswith(("https://", "http://")) else None))
    refunds: list[PlatformRefund] = []
    for item in t.cast(list[JSON], node.get("refunds") or []):
        if not isinstance(item, dict):
            continue
        refund_id = _text(item.get("legacyResourceId")) or (
            mapping.gid_tail(str(item["id"])) if item.get("id") else None)
        transactions = t.cast(list[JSON], (item.get("transactions") or {}).get("nodes") or [])
        refund = _refund(refund_id, item.get("note"), transactions, currency=currency, order=order_id)
        if refund is not None:
            refunds.append(refund)
    return PlatformOrderUpdate(checkout_session_id=session_id, platform_order_id=order_id,
                               canceled=bool(node.get("cancelledAt")), fulfillments=tuple(fulfillments),
                               refunds=tuple(refunds))
