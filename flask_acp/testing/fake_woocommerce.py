"""The fake WooCommerce site, :mod:`flask_acp.testing.fakes.woocommerce`, at its
historical import path (``from flask_acp.testing.fake_woocommerce import FakeWooCommerce``).

Standalone: ``python -m flask_acp.testing.fake_woocommerce --port 8089 --seed FILE``
(prints the URL and the consumer key and secret).
"""

from __future__ import annotations

import decimal

from .fakes.woocommerce import *  # noqa: F403 - the package's public names, at their historical path
from .fakes.woocommerce import CART_TOKEN_TTL as CART_TOKEN_TTL
from .fakes.woocommerce import CHECKOUT_HOLD_MINUTES as CHECKOUT_HOLD_MINUTES
from .fakes.woocommerce import DEMO_SEED
from .fakes.woocommerce import MAX_WEBHOOK_FAILURES as MAX_WEBHOOK_FAILURES
from .fakes.woocommerce import WEBHOOK_USER_AGENT as WEBHOOK_USER_AGENT
from .fakes.woocommerce import JSONDict as JSONDict
from .fakes.woocommerce import __all__ as __all__
from .fakes.woocommerce import main

#: the folder of the seed files.
HERE = DEMO_SEED.parent
D = decimal.Decimal

if __name__ == "__main__":
    main()
