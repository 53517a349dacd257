"""The fake WooCommerce site, :mod:`flask_acp.testing.fakes.woocommerce`, at its
historical import path (``from flask_acp.testing.fake_woocommerce import FakeWooCommerce``).

Standalone: ``python -m flask_acp.testing.fake_woocommerce --port 8089 --seed FILE``
(prints the URL and the consumer key and secret).
"""

from __future__ import annotations

import decimal

from .fakes.woocommerce import CART_TOKEN_TTL as CART_TOKEN_TTL
from .fakes.woocommerce import CHECKOUT_HOLD_MINUTES as CHECKOUT_HOLD_MINUTES
from .fakes.woocommerce import DEFAULT_CONSUMER_KEY as DEFAULT_CONSUMER_KEY
from .fakes.woocommerce import DEFAULT_CONSUMER_SECRET as DEFAULT_CONSUMER_SECRET
from .fakes.woocommerce import DEFAULT_WEBHOOK_SECRET as DEFAULT_WEBHOOK_SECRET
from .fakes.woocommerce import DEMO_SEED as DEMO_SEED
from .fakes.woocommerce import MAX_WEBHOOK_FAILURES as MAX_WEBHOOK_FAILURES
from .fakes.woocommerce import TRACKING_META_KEY as TRACKING_META_KEY
from .fakes.woocommerce import WEBHOOK_USER_AGENT as WEBHOOK_USER_AGENT
from .fakes.woocommerce import FakeWooCommerce as FakeWooCommerce
from .fakes.woocommerce import FaultKind as FaultKind
from .fakes.woocommerce import JSONDict as JSONDict
from .fakes.woocommerce import RecordedCall as RecordedCall
from .fakes.woocommerce import WebhookDelivery as WebhookDelivery
from .fakes.woocommerce import load_seed as load_seed
from .fakes.woocommerce import main as main

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

#: the folder of the seed files.
HERE = DEMO_SEED.parent
D = decimal.Decimal

if __name__ == "__main__":
    main()
