"""The fake Stripe API, :mod:`flask_acp.testing.fakes.stripe`, at its historical
import path (``from flask_acp.testing.fake_stripe import FakeStripe,
mint_granted_token``).

Standalone: ``python -m flask_acp.testing.fake_stripe [--host H] [--port N]
[--api-key K] [--verbose]`` (default port 12111, the example app's).
"""

from __future__ import annotations

from .fakes.stripe import ACCOUNT_API_VERSION as ACCOUNT_API_VERSION
from .fakes.stripe import DEFAULT_API_KEY as DEFAULT_API_KEY
from .fakes.stripe import DEFAULT_SPT_API_VERSION as DEFAULT_SPT_API_VERSION
from .fakes.stripe import DEFAULT_WEBHOOK_SECRET as DEFAULT_WEBHOOK_SECRET
from .fakes.stripe import SPT_PARAM as SPT_PARAM
from .fakes.stripe import TEST_PAYMENT_METHODS as TEST_PAYMENT_METHODS
from .fakes.stripe import TOKEN_INVALID_CODE as TOKEN_INVALID_CODE
from .fakes.stripe import WEBHOOK_EVENTS as WEBHOOK_EVENTS
from .fakes.stripe import FakeStripe as FakeStripe
from .fakes.stripe import FaultKind as FaultKind
from .fakes.stripe import JSONDict as JSONDict
from .fakes.stripe import RecordedRequest as RecordedRequest
from .fakes.stripe import SandboxCard as SandboxCard
from .fakes.stripe import WebhookDelivery as WebhookDelivery
from .fakes.stripe import WireRequest as WireRequest
from .fakes.stripe import ensure_fake_stripe as ensure_fake_stripe
from .fakes.stripe import main as main
from .fakes.stripe import mint_granted_token as mint_granted_token
from .fakes.stripe import stripe_signature_header as stripe_signature_header

__all__ = [
    "ACCOUNT_API_VERSION",
    "DEFAULT_API_KEY",
    "DEFAULT_SPT_API_VERSION",
    "DEFAULT_WEBHOOK_SECRET",
    "SPT_PARAM",
    "TEST_PAYMENT_METHODS",
    "TOKEN_INVALID_CODE",
    "WEBHOOK_EVENTS",
    "FakeStripe",
    "FaultKind",
    "RecordedRequest",
    "SandboxCard",
    "WebhookDelivery",
    "WireRequest",
    "ensure_fake_stripe",
    "main",
    "mint_granted_token",
    "stripe_signature_header",
]

if __name__ == "__main__":
    main()
