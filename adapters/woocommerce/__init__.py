# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""WooCommerce adapter for flask-acp: Store API cart for quoting, REST v3 for orders.

Usage (Flask config)::

    ACP_ADAPTER = "woocommerce"
    WOOCOMMERCE_URL = "https://shop.example"        # https (http only to loopback)
    WOOCOMMERCE_CONSUMER_KEY = "ck_..."             # REST API key, Read/Write
    WOOCOMMERCE_CONSUMER_SECRET = "cs_..."
    WOOCOMMERCE_TIMEOUT = 10                        # seconds per HTTP call
    WOOCOMMERCE_WEBHOOK_SECRET = "..."              # order webhooks (a list while rotating)
    WOOCOMMERCE_RECONCILE_WINDOW = 604800           # seconds `flask acp reconcile` re-reads

(the keys are declared in :mod:`.settings`).

Order changes made in WooCommerce (status, refunds, Shipment Tracking numbers)
reach the agent as ``order_update`` webhooks. In WooCommerce, Settings →
Advanced → Webhooks → Add webhook: topic "Order updated", delivery URL
``https://<your app>{ACP_URL_PREFIX}/webhooks/woocommerce``, secret =
``WOOCOMMERCE_WEBHOOK_SECRET``, API version "WP REST API Integration v3".
WooCommerce delivers late (its queue runs on WP-Cron) and never retries a failed
delivery, so also run ``flask acp reconcile`` periodically (e.g. hourly; it
re-reads the orders modified within ``WOOCOMMERCE_RECONCILE_WINDOW``, or since
``--since``). A refund made in WooCommerce (Refund, amount, *without* "refund
via gateway") is given back to the buyer through the payment processor, once.

See :mod:`.adapter` for the calls made per ACP operation, :mod:`.mapping` for
the money and cart conversions, :mod:`.webhooks` for the order status sync and
:mod:`.client` for transport and errors.
"""

from __future__ import annotations

from .adapter import MESSAGE_KEYS
from .adapter import WooCommerceAdapter
from .client import CartSession
from .client import WooCommerceClient
from .client import WooCommerceError
from .client import WooCommerceNoAnswerError
from .mapping import PriceNotRepresentable

__all__ = [
    "MESSAGE_KEYS",
    "CartSession",
    "PriceNotRepresentable",
    "WooCommerceAdapter",
    "WooCommerceClient",
    "WooCommerceError",
    "WooCommerceNoAnswerError",
]
