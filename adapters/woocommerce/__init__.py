# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""WooCommerce adapter for flask-acp: Store API cart for quoting, REST v3 for orders.

Usage (Flask config)::

    ACP_ADAPTER = "woocommerce"
    WOOCOMMERCE_URL = "https://shop.example"        # https (http only to loopback)
    WOOCOMMERCE_CONSUMER_KEY = "ck_..."             # REST API key, Read/Write
    WOOCOMMERCE_CONSUMER_SECRET = "cs_..."
    WOOCOMMERCE_TIMEOUT = 10                        # seconds per HTTP call

See :mod:`.adapter` for the calls made per ACP operation, :mod:`.mapping` for
the money and cart conversions and :mod:`.client` for transport and errors.
"""

from __future__ import annotations

from .adapter import MESSAGE_KEYS
from .adapter import WooCommerceAdapter
from .client import CartSession
from .client import WooCommerceClient
from .client import WooCommerceError
from .mapping import PriceNotRepresentable

__all__ = [
    "MESSAGE_KEYS",
    "CartSession",
    "PriceNotRepresentable",
    "WooCommerceAdapter",
    "WooCommerceClient",
    "WooCommerceError",
]
