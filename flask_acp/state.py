"""The per-app state kept in ``app.extensions["acp"]`` (built by
:meth:`flask_acp.ACP.init_app`), and how the Flask edges reach it."""

from __future__ import annotations

import dataclasses
import typing as t

from flask import current_app

from .adapter import PlatformAdapter
from .api.pipeline import Pipeline
from .checkout import CheckoutService
from .config import Settings
from .orders import OrderService
from .payments.base import PaymentProcessor
from .payments.stripe import StripeSettings
from .store.base import Storage
from .webhooks.service import WebhookService


@dataclasses.dataclass(frozen=True, slots=True)
class ACPState:
    """Per-app state in ``app.extensions["acp"]``."""

    settings: Settings
    storage: Storage
    adapter: PlatformAdapter
    payments: PaymentProcessor
    service: CheckoutService
    orders: OrderService
    webhooks: WebhookService
    pipeline: Pipeline
    #: the ``ACP_STRIPE_*`` keys (the inbound Stripe webhook reads its secret there).
    stripe_settings: StripeSettings


def current_state() -> ACPState:
    """The state of the app handling the current request or CLI command."""
    return t.cast(ACPState, current_app.extensions["acp"])
