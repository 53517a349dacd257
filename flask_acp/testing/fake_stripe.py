"""The fake Stripe API, :mod:`flask_acp.testing.fakes.stripe`, at its historical
import path (``from flask_acp.testing.fake_stripe import FakeStripe,
mint_granted_token``).

Standalone: ``python -m flask_acp.testing.fake_stripe [--host H] [--port N]
[--api-key K] [--verbose]`` (default port 12111, the example app's).
"""

from __future__ import annotations

from .fakes.stripe import *  # noqa: F403 - the package's public names, at their historical path
from .fakes.stripe import JSONDict as JSONDict
from .fakes.stripe import __all__ as __all__
from .fakes.stripe import main

if __name__ == "__main__":
    main()
