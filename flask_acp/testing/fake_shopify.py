"""The fake Shopify Admin GraphQL API, :mod:`flask_acp.testing.fakes.shopify`, at
its historical import path (``from flask_acp.testing.fake_shopify import FakeShopify``).

Standalone (the example app can be pointed at it)::

    python -m flask_acp.testing.fake_shopify --port 8765 --seed flask_acp/testing/shopify_demo_seed.json
"""

from __future__ import annotations

from .fakes.shopify import DEFAULT_WEBHOOK_TOPICS as DEFAULT_WEBHOOK_TOPICS
from .fakes.shopify import DEMO_SEED as DEMO_SEED
from .fakes.shopify import SCHEMA_PATH as SCHEMA_PATH
from .fakes.shopify import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from .fakes.shopify import FakeShopify as FakeShopify
from .fakes.shopify import WebhookDelivery as WebhookDelivery
from .fakes.shopify import main as main

__all__ = ["DEFAULT_WEBHOOK_TOPICS", "DEMO_SEED", "SCHEMA_PATH", "SUPPORTED_VERSIONS", "FakeShopify",
           "WebhookDelivery", "main"]

if __name__ == "__main__":
    main()
