"""A stateful fake of the Shopify Admin GraphQL API, for tests and demos that
must not reach Shopify.

It is a real HTTP server on loopback (werkzeug, threaded, ephemeral port by
default) that executes every request with graphql-core against
``shopify_schema.graphql``, a hand-written subset of the real Admin schema
(same type, field and argument names and types), so a document the real API
would reject for an unknown field is rejected here too::

    with FakeShopify(seed) as shop:          # seed: dict or path of a JSON file
        app.config.update(SHOPIFY_SHOP_URL=shop.url, SHOPIFY_ACCESS_TOKEN=shop.access_token)
        ...
        assert shop.calls["AcpDraftOrderCreate"] == 1

Standalone (the example app can be pointed at it)::

    python -m flask_acp.testing.fake_shopify --port 8765 --seed flask_acp/testing/shopify_demo_seed.json

Needs ``graphql-core`` (the ``testing`` extra). Money is handled as Shopify
does: decimal strings in ``MoneyV2.amount`` (trailing zeros dropped, ``"25.0"``).

Endpoints
---------

``POST /admin/api/<version>/graphql.json``
    ``X-Shopify-Access-Token`` must be a seeded token or one issued by the
    client-credentials grant (not expired by the fake clock), else 401.
    ``X-Shopify-API-Version`` answers the requested version if supported, else
    the oldest supported one (Shopify's fall-forward). Invalid documents get
    HTTP 200 with top-level ``errors``, like Shopify.
``POST /admin/oauth/access_token``
    ``grant_type=client_credentials`` (form or JSON) with a seeded
    ``client_id``/``client_secret``: ``{access_token, scope, expires_in}``.
``/__fake__/state`` (GET), ``/__fake__/reset``, ``/__fake__/seed``,
``/__fake__/clock`` (``{"advance_seconds": n}``), ``/__fake__/faults`` (POST),
``/__fake__/webhooks`` (GET: deliveries; POST ``{"url", "secret"?, "topics"?}``:
subscribe), ``/__fake__/events/{fulfill,fulfillment,refund,cancel}`` (POST)
    Control routes for standalone use; tests call the Python methods.

Root fields: ``shop``, ``nodes``, ``node``, ``productVariant``, ``draftOrder``,
``draftOrders`` (``query`` supports ``tag:``, ``status:``, ``updated_at:`` /
``created_at:`` with ``<``, ``<=``, ``>``, ``>=``), ``order``, ``orders`` (``query``:
``tag:``, ``status:open|closed|cancelled|not_closed``, ``updated_at:`` /
``created_at:``; ``sortKey`` ``UPDATED_AT``, ``CREATED_AT``, ``PROCESSED_AT``, ``ID``),
``draftOrderAvailableDeliveryOptions``; mutations ``draftOrderCreate``,
``draftOrderUpdate``, ``draftOrderComplete``, ``draftOrderDelete``, ``tagsAdd``.
Orders have line items, fulfillments (``status``, ``displayStatus``,
``trackingInfo``, ``fulfillmentLineItems``) and refunds (one ``REFUND``
transaction on the ``manual`` gateway each).

Behaviour (the fake's choices where Shopify's is not documented)
----------------------------------------------------------------

* **Reservations**: a draft with ``reserveInventoryUntil`` in the future (fake
  clock) reserves its lines of tracked variants; once that time has passed it
  holds nothing (its ``reserveInventoryUntil`` still reads the past time), and
  ``reserveInventoryUntil: null`` clears it. Reserved units are not in other
  readers' ``sellableOnlineQuantity`` / ``inventoryQuantity``, which may go
  negative (Shopify does not refuse a reservation beyond stock).
  ``draftOrderComplete`` checks no stock, as Shopify's does not (its reference
  says to verify availability before completing a draft): it commits the
  draft's inventory even when its reservation lapsed and other orders took the
  units (``on hand`` goes below zero: oversold) and drops the reservation;
  ``draftOrderDelete`` drops it.
* **Products** (the product feed): ``products(first, after, query, sortKey)``
  pages through the products (a product is the variants sharing a
  ``product_id``; ``status:active`` filters), ``nodes`` resolves ``Product``
  and ``InventoryItem`` GIDs (an inventory item's id is its variant's);
  :meth:`FakeShopify.update_product` renames a product or sets its status and
  sends ``products/update``, :meth:`FakeShopify.delete_product` deletes one and
  sends ``products/delete``, ``set_inventory(..., notify=True)`` sends
  ``inventory_levels/update`` (subscribe those topics).
* **Prices**: a draft's variant lines follow the variant's current price, as on
  Shopify since 2025-01 for lines without ``priceOverride``:
  :meth:`FakeShopify.set_price` re-prices the open drafts holding the variant
  (a completed draft's order keeps its amounts). A line given
  ``DraftOrderLineItemInput.priceOverride`` (``MoneyInput``) keeps that unit
  price whatever the catalog does, converted at the shop's rates when given in
  another currency than the draft's presentment currency (also when that
  changes later), until a ``draftOrderUpdate`` replaces the line;
  ``DraftOrderLineItem.priceOverride`` reads it back in the presentment
  currency and ``originalUnitPriceSet`` is the unit price in use. A negative
  amount or a currency the shop does not sell in is a ``userError`` on
  ``["lineItems", i, "priceOverride"]``.
* **Asynchronous calculation**: after a create/update (or a price change) a
  draft reads ``ready: false`` -- with no taxes yet -- for ``ready_delay_reads``
  reads (default 1: the mutation's own payload), then ``ready: true``.
* **Tax**: ``tax_rates`` by ``"CC-PROVINCE"`` then ``"CC"`` of the shipping
  address, per line half-up (``tax_rounding: "order"`` rounds the order's tax
  once instead, so the lines' taxes may not add up), on shipping when
  ``tax_shipping``; ``taxes_included`` shops have tax inside their prices.
  No address, no tax.
* **Presentment currencies**: ``shop.presentment_currencies`` maps a currency to
  its exchange rate from the shop currency; a variant's price in it is its
  ``presentment_prices`` entry or the converted price (half-up). Delivery rates
  are quoted in the shop currency; a draft's shipping line in both.
* **Discount codes**: ``DraftOrderInput.discountCodes`` replaces the draft's
  codes; each seeded code (``discount_codes``: ``percentage``, a fraction, or
  ``amount`` in the shop currency; one of the two) applies, in the order given,
  to what the lines still cost -- a percentage per line half-up, an amount
  converted to the presentment currency, capped at the lines' price and split
  over them in proportion (largest remainder) -- unless it is unknown or not
  started ("is not valid"), past ``ends_at`` ("has expired"), at its
  ``usage_limit``, below ``minimum_subtotal`` (the lines' price in the shop
  currency), repeated, or cannot combine (a second code applies only when it and
  every code before it have ``combines: true``); such a code is skipped with a
  ``DraftOrderDiscountNotAppliedWarning``. Applied codes are in ``discountCodes``
  and ``platformDiscounts`` (allocations to the lines; ``presentationLevel``
  ``line`` for a percentage, ``order`` for an amount), reduce each line's
  ``discountedTotalSet``, ``subtotalPriceSet`` and the tax; completing the draft
  counts a use of each. No automatic discounts.
* **Rate handles** change on every ``draftOrderAvailableDeliveryOptions`` call;
  any issued handle stays valid.
* **Cost**: 1 per query root field (``nodes``: 1 per id, connections: ``first``),
  10 per mutation; a bucket per token (``bucket.maximum_available``,
  ``bucket.restore_rate`` per second); an empty bucket answers ``THROTTLED``.
* **Faults** (:meth:`FakeShopify.fail_next`, or :meth:`FakeShopify.add_fault`;
  matched by GraphQL operation name, applied before authentication): HTTP
  status (500, 503, 429 with ``Retry-After``), ``THROTTLED`` with given cost
  figures, a timeout (the request is held, not executed, then the connection
  is dropped), ``drop`` (executed, then the connection is dropped: "complete
  succeeded but the response was lost"), ``delay``, ``500_after``; and the
  common kinds of :mod:`flask_acp.testing.fakes`.
* **Merchant actions** (what a merchant does in the admin; each emits the
  topics Shopify sends): :meth:`FakeShopify.fulfill` (``fulfillments/create``,
  ``orders/partially_fulfilled`` or ``orders/fulfilled``, ``orders/updated``),
  :meth:`FakeShopify.update_fulfillment` (carrier ``shipment_status``,
  cancellation; ``fulfillments/update``, ``orders/updated``),
  :meth:`FakeShopify.refund` (``refunds/create``, ``orders/updated``) and
  :meth:`FakeShopify.cancel` (optionally refunding; ``orders/cancelled``,
  ``orders/updated``). ``tagsAdd`` on an order emits ``orders/updated``.
* **Webhooks**: every resource event goes through :meth:`FakeShopify.emit`
  (recorded in :attr:`FakeShopify.events` with its REST-shaped payload: snake
  case, numeric ids, ``admin_graphql_api_id``, amounts as strings with the
  currency's decimals). With a subscription (:meth:`FakeShopify.subscribe_webhooks`,
  or the seed's ``webhooks.url``) covering the topic, it is POSTed there from
  a background thread, in order, with Shopify's headers: ``X-Shopify-Topic``,
  ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the exact body with
  :attr:`FakeShopify.webhook_secret`: ``webhooks.secret``, else the first
  seeded client's secret), ``X-Shopify-Event-Id`` (new per event; topics of
  one action get one each), ``X-Shopify-Webhook-Id``, ``X-Shopify-Shop-Domain``,
  ``X-Shopify-API-Version``, ``X-Shopify-Triggered-At``. A non-2xx answer or
  none (1 s connect, 5 s timeouts) is retried ``webhooks.retries`` times
  (default 2) after ``webhooks.retry_delay`` seconds (default 0.1); Shopify
  retries for hours. :meth:`FakeShopify.flush_webhooks` waits for the queue,
  :meth:`FakeShopify.redeliver` sends an event again (same event id: a
  duplicate), :meth:`FakeShopify.suppress_webhooks` sends nothing (a webhook
  Shopify never delivered); :attr:`FakeShopify.deliveries` records every attempt.

Seed (JSON; every key optional except ``variants``)::

    {"shop": {"name": "Demo", "domain": "demo.myshopify.com", "currency": "USD",
              "taxes_included": false, "tax_shipping": true,
              "presentment_currencies": {"KWD": "0.307", "JPY": "150"}},
     "access_tokens": ["shpat_test"],
     "clients": {"client-id": {"secret": "s3cret", "expires_in": 86399}},
     "tax_rates": {"US-CA": "0.0875", "US": "0.05"}, "tax_rounding": "line",
     "shipping_rates": {"US": [{"title": "Standard", "code": "STANDARD", "source": "shopify",
                                 "price": "5.00"}], "*": []},
     "local_delivery_rates": {},
     "variants": [{"id": 4449, "product_id": 101, "product_title": "Hoodie", "title": "Large",
                   "sku": "HOOD-L", "price": "25.00", "inventory": 5, "tracked": true,
                   "inventory_policy": "DENY", "requires_shipping": true, "taxable": true,
                   "published": true, "status": "ACTIVE", "image": "https://...",
                   "presentment_prices": {"KWD": "7.500"},
                   "barcode": "00012345600012", "compare_at_price": "30.00",
                   "options": {"Size": "L"}, "product_description": "..."}],
     "discount_codes": [{"code": "SAVE20", "title": "20% off", "percentage": "0.2",
                         "amount": null, "minimum_subtotal": null, "starts_at": null,
                         "ends_at": null, "combines": false, "usage_limit": null, "usage_count": 0}],
     "ready_delay_reads": 1, "bucket": {"maximum_available": 1000, "restore_rate": 100},
     "order_number_start": 1001, "api_versions": ["2025-07", "...", "2026-10"],
     "webhooks": {"url": "http://127.0.0.1:5000/webhooks/shopify", "secret": "...",
                  "topics": ["orders/updated", "..."], "retries": 2, "retry_delay": 0.1}}

Layout: :class:`FakeShopify` is assembled from one layer per concern, each
subclassing the one before: ``state`` (seed, catalogue, controls) -> ``webhooks``
-> ``inventory`` (stock, tax, money) -> ``orders`` (merchant actions, views, REST
payloads) -> ``drafts`` (draft orders) -> ``execution`` (GraphQL, cost, throttle)
-> ``server`` (routing, control routes, faults, CLI); ``model`` holds the records
and helpers.
"""

from __future__ import annotations

try:
    import graphql  # noqa: F401 - checked here, before the modules that need it
except ModuleNotFoundError:  # pragma: no cover - exercised in a subprocess by the tests
    raise ModuleNotFoundError("FakeShopify needs graphql-core: pip install 'flask-acp[testing]'") from None

from .execution import SCHEMA_PATH as SCHEMA_PATH
from .model import DEFAULT_WEBHOOK_TOPICS as DEFAULT_WEBHOOK_TOPICS
from .model import DEMO_SEED as DEMO_SEED
from .model import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from .model import WebhookDelivery as WebhookDelivery
from .server import FakeShopify as FakeShopify
from .server import main as main

__all__ = ["DEFAULT_WEBHOOK_TOPICS", "DEMO_SEED", "SCHEMA_PATH", "SUPPORTED_VERSIONS", "FakeShopify",
           "WebhookDelivery", "main"]
