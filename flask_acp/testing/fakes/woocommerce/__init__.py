"""A stateful fake WooCommerce site for tests: the Store API cart and checkout and
the REST v3 orders endpoints, served over real HTTP on ``127.0.0.1``.

::

    with FakeWooCommerce("flask_acp/testing/woocommerce_demo_seed.json") as woo:
        app.config.update(woo.config())          # WOOCOMMERCE_URL, _CONSUMER_KEY, _SECRET
        ...
        assert woo.counts["GET /wc/store/v1/checkout"] == 1
        assert woo.order(woo.last_order_id())["status"] == "processing"

Standalone: ``python -m flask_acp.testing.fake_woocommerce --port 8089 --seed FILE``
(prints the URL and the consumer key and secret).

Endpoints (under ``/wp-json``; ``/?rest_route=/wc/...`` works too):

=====================================================  =====================================
Store API (no auth; ``Cart-Token``/``Nonce``)
``GET  /wc/store/v1/cart``                             the cart (a new one without a token)
``POST /wc/store/v1/cart/add-item``                    ``{id, quantity}`` (merges a product)
``POST /wc/store/v1/cart/update-item``                 ``{key, quantity}``
``POST /wc/store/v1/cart/remove-item``                 ``{key}``
``POST /wc/store/v1/cart/update-customer``             ``{billing_address, shipping_address}``
``POST /wc/store/v1/cart/select-shipping-rate``        ``{package_id, rate_id}``
``POST /wc/store/v1/cart/apply-coupon`` / ``remove-coupon``  ``{code}``
``DELETE /wc/store/v1/cart/items``                     empty the cart
``POST /wc/store/v1/batch``                            ``{requests: [{path, method, body, headers}]}``
                                                       (<= 25, mutating cart routes; 207)
``GET  /wc/store/v1/checkout``                         create/update the checkout-draft order,
                                                       hold its stock 10 minutes
``POST /wc/store/v1/checkout``                         always refuses the payment method (no
                                                       gateway: why the adapter uses REST)
``GET  /wc/store/v1/products[?include=1,2]``, ``/products/{id}``
REST v3 (HTTP Basic consumer key/secret, or ``?consumer_key=&consumer_secret=``)
``GET  /wc/v3/orders/{id}``, ``PUT /wc/v3/orders/{id}``, ``POST /wc/v3/orders``,
``GET  /wc/v3/orders`` (``status``, ``include``, ``after``, ``modified_after``, ``page``,
``per_page``, ``orderby``, ``order``; ``X-WP-Total``/``X-WP-TotalPages``/``Link``); ``?dp=N``.
=====================================================  =====================================

Behaviour reproduced (platforms.md §3, §6.2):

* Money: Store API amounts are integer strings in the store's minor unit
  (``price_decimals``, which may differ from ISO 4217: JPY with 2); REST amounts
  are decimal strings with ``dp`` (default ``price_decimals``) decimals; line
  item ``price`` is a JSON float, as in WooCommerce.
* Cart maths in store minor units: per line, price × quantity rounded half-up;
  tax per line half-up (``prices_include_tax``: the tax is taken out of the
  price); coupons (``percent``: floor per line, the remainder spread a unit at a
  time; ``fixed_cart``: proportional, same remainder rule; ``fixed_product``)
  on the price as entered (tax-inclusive or not), applied in order; coupon
  ``total_discount_tax`` rounded per coupon (so it can differ from the cart's);
  fees (ex tax); shipping rates per package (``flat_rate`` cost + per-item,
  ``free_shipping`` with ``requires``/``min_amount``, ``local_pickup``), taxed
  at the location's shipping rates; ``tax_round_at_subtotal`` rounds the items'
  tax once at cart level (so ``total_tax`` can differ from the lines' sum).
* Coupons with ``auto_apply: true`` are applied by the store itself whenever
  their conditions hold (as coupon plugins do); invalid applied coupons show
  in the cart ``errors`` and give no discount.
* Stock: ``add-item``/``update-item`` refuse quantities above stock minus the
  unexpired holds of other orders (``woocommerce_rest_product_out_of_stock`` /
  ``..._partially_out_of_stock``); the cart ``errors`` list lines the stock no
  longer covers; ``GET /checkout`` holds stock for 10 (fake-clock) minutes or
  fails with 403 ``woocommerce_product_not_enough_stock``; holds count only for
  ``checkout-draft``/``pending`` orders and end on payment or cancellation.
* Orders: ``PUT`` applies props, recalculates taxes if ``billing``/``shipping``
  are sent, sets ``status``, then ``set_paid`` runs ``payment_complete()`` only
  if the order ``needs_payment()`` (``pending``/``failed`` with a total > 0):
  ``processing`` (``completed`` when every line is virtual and downloadable),
  ``date_paid``, stock reduced, holds released.
* ``Cart-Token``: an HS256 JWT signed with the fake's salt, 48 h (fake clock); an
  unknown, forged or expired token gets a new empty cart and a new token.
  ``Nonce``: changes every 12 h. Mutating Store API calls need a valid
  ``Cart-Token`` or ``Nonce`` (401 ``woocommerce_rest_missing_nonce``, 403
  ``woocommerce_rest_invalid_nonce``).
* Errors: ``{code, message, data: {status}}`` (409 cart conflicts add ``data.cart``).

Seed (JSON; every key optional)::

    {"settings": {"currency": "USD", "currency_symbol": "$", "price_decimals": 2,
                  "prices_include_tax": false, "tax_display_cart": "excl",
                  "tax_round_at_subtotal": false, "base_location": {"country": "US", "state": "CA"},
                  "notify_low_stock_amount": 2, "packages": "single" | "by_shipping_class",
                  "site_url": null, "hold_stock_minutes": 60},
     "consumer_key": "ck_...", "consumer_secret": "cs_...",
     "webhook_secret": "..." (the default secret of :meth:`FakeWooCommerce.add_webhook`),
     "products": [{"id": 10, "name": "...", "regular_price": "18.00", "sale_price": "",
                   "type": "simple" | "variation" | "variable", "parent_id": 0, "sku": "",
                   "status": "publish", "tax_status": "taxable", "tax_class": "",
                   "virtual": false, "downloadable": false, "manage_stock": true,
                   "stock_quantity": 5, "stock_status": "instock", "sold_individually": false,
                   "shipping_class": "", "images": ["https://..."], "short_description": ""}],
     "tax_rates": [{"id": 1, "country": "US", "state": "CA", "rate": "8.2500", "name": "CA",
                    "priority": 1, "shipping": true, "class": ""}],
     "shipping_zones": [{"id": 1, "name": "US", "locations": ["US", "US:CA", "941*"],
                         "methods": [{"instance_id": 1, "method_id": "flat_rate", "title": "...",
                                      "cost": "5.00", "cost_per_item": "0", "tax_status": "taxable",
                                      "min_amount": "50.00", "requires": "min_amount"}]}],
     "rest_of_world_methods": [...],
     "coupons": [{"code": "WELCOME10", "discount_type": "percent", "amount": "10",
                  "auto_apply": false, "minimum_amount": "", "usage_limit": null,
                  "usage_count": 0, "date_expires": null (Unix seconds, fake clock),
                  "free_shipping": false}],
     "fees": [{"name": "Handling", "amount": "1.00", "taxable": true}],
     "next_order_id": 100}

Test controls (the :mod:`flask_acp.testing.fakes` API): :meth:`FakeWooCommerce.fail_next`
(``"500"``, ``"500_after"``, ``"html_503"``, ``"429"``, ``"timeout"``, ``"drop_after"``,
``"slow"``; ``route`` matches), :meth:`advance_clock`, :meth:`freeze_clock`, ``clock=``,
:meth:`set_stock`, :meth:`set_price`, :meth:`update_product` (changes fields and sends
``product.updated`` to the webhooks of that topic), :meth:`delete_product` (trashes it and
sends ``product.deleted``, ``{"id": N}``; REST v3 ``GET /wc/v3/products``,
``/products/{id}`` and ``/products/{id}/variations`` serve products, with
``global_unique_id`` and ``attributes`` from the seed); inspection: :attr:`counts` (HTTP calls
per route name, e.g. ``"PUT /wc/v3/orders/{id}"``), :attr:`batched_counts`
(calls inside batches), :attr:`calls`, :meth:`order`, :meth:`stock`,
:meth:`held`, :attr:`webhook_events`.

Merchant actions, as in WooCommerce's admin (each saves the order once, so one
``order.updated``): :meth:`complete_order`, :meth:`cancel_order`,
:meth:`set_order_status`, :meth:`refund` (``refunds[]`` entries with a negative
``total``; a full refund makes the order ``refunded``), :meth:`add_tracking`
(the Shipment Tracking extension's ``_wc_shipment_tracking_items`` meta).

Webhooks (platforms.md §3.7): :meth:`add_webhook` registers a delivery URL for a
topic (``order.updated``, ``order.created``) and sends the ping at once
(``POST`` form body ``webhook_id=N``, no signature). Every order save then
queues a delivery per matching active webhook; one background thread sends them
in order, building the payload when it sends (the REST v3 order as it is
then, as WooCommerce does) with the headers ``X-WC-Webhook-Source``,
``-Topic``, ``-Resource``, ``-Event``, ``-Signature`` (base64 HMAC-SHA256 of the
body, keyed by the webhook secret), ``-ID`` and ``-Delivery-ID`` (new per
attempt). 2xx, 301 and 302 are successes; failures are not retried (nor are
they by WooCommerce) and a webhook is ``disabled`` after more than 5 in a row.
Controls: :meth:`drop_next_deliveries` (queued, then lost: never sent),
:meth:`redeliver` (the same body again, new delivery id), :meth:`flush_webhooks`
(wait until sent), :meth:`subscribe_webhooks` (``add_webhook`` per topic),
:meth:`send_webhook` (one signed delivery outside any registered webhook);
inspection: :attr:`deliveries` (= :attr:`webhook_log`), :attr:`webhooks`.

Layout: :class:`FakeWooCommerce` is assembled from one layer per concern, each
subclassing the one before: ``state`` (seed, settings, counters) -> ``webhooks``
-> ``products`` -> ``pricing`` (the cart engine) -> ``orders`` (REST v3 and
merchant actions) -> ``cart`` (the Store API) -> ``server`` (routing, faults,
CLI); ``model`` holds the records, errors and routes.
"""

from __future__ import annotations

import typing as t

from .model import CART_TOKEN_TTL as CART_TOKEN_TTL
from .model import CHECKOUT_HOLD_MINUTES as CHECKOUT_HOLD_MINUTES
from .model import DEFAULT_CONSUMER_KEY as DEFAULT_CONSUMER_KEY
from .model import DEFAULT_CONSUMER_SECRET as DEFAULT_CONSUMER_SECRET
from .model import DEFAULT_WEBHOOK_SECRET as DEFAULT_WEBHOOK_SECRET
from .model import DEMO_SEED as DEMO_SEED
from .model import MAX_WEBHOOK_FAILURES as MAX_WEBHOOK_FAILURES
from .model import TRACKING_META_KEY as TRACKING_META_KEY
from .model import WEBHOOK_USER_AGENT as WEBHOOK_USER_AGENT
from .model import JSONDict as JSONDict
from .model import RecordedCall as RecordedCall
from .model import WebhookDelivery as WebhookDelivery
from .model import load_seed as load_seed
from .server import FakeWooCommerce as FakeWooCommerce
from .server import main as main

__all__ = [
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "DEFAULT_WEBHOOK_SECRET",
    "DEMO_SEED",
    "TRACKING_META_KEY",
    "FakeWooCommerce",
    "FaultKind",
    "RecordedCall",
    "WebhookDelivery",
    "load_seed",
    "main",
]

#: the fault kinds of :meth:`FakeWooCommerce.fail_next`.
FaultKind = t.Literal["500", "500_after", "html_503", "429", "timeout", "drop_after", "slow"]
