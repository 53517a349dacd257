"""Shopify adapter for flask-acp: ACP checkout sessions on Admin GraphQL draft orders.

Enable it with ``ACP_ADAPTER = "shopify"`` and the ``SHOPIFY_*`` keys declared in
:mod:`.settings`. Modules: :mod:`.client` (HTTP, auth,
throttling, error translation), :mod:`.mapping` (all money conversion),
:mod:`.queries` (the GraphQL documents), :mod:`.webhooks` (order sync: webhook
verification and payloads, reconcile results), :mod:`.adapter` (orchestration).

Order sync: subscribe the app to the topics of :data:`.webhooks.TOPICS` with
the endpoint ``{ACP_URL_PREFIX}/webhooks/shopify`` (JSON format), run ``flask
acp reconcile --since ...`` periodically for webhooks Shopify gave up on, and
``flask acp cleanup`` for drafts abandoned sessions left behind.
"""

# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
from __future__ import annotations

from .adapter import MESSAGE_KEYS as MESSAGE_KEYS
from .adapter import SESSION_ATTRIBUTE as SESSION_ATTRIBUTE
from .adapter import TAG as TAG
from .adapter import ShopifyAdapter as ShopifyAdapter
from .client import DEFAULT_API_VERSION as DEFAULT_API_VERSION
from .client import ShopifyClient as ShopifyClient
from .client import ShopifyGraphQLError as ShopifyGraphQLError
from .client import ShopifyNoAnswerError as ShopifyNoAnswerError
from .client import ShopifyThrottledError as ShopifyThrottledError

__all__ = [
    "DEFAULT_API_VERSION",
    "MESSAGE_KEYS",
    "SESSION_ATTRIBUTE",
    "TAG",
    "ShopifyAdapter",
    "ShopifyClient",
    "ShopifyGraphQLError",
    "ShopifyNoAnswerError",
    "ShopifyThrottledError",
]
