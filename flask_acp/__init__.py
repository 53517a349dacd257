"""flask-acp: the merchant side of the Agentic Commerce Protocol for Flask."""

from __future__ import annotations

from .adapter import PlatformAdapter
from .adapter import QuoteRequest
from .checkout import CheckoutService
from .errors import ACPError
from .errors import AdapterError
from .errors import AdapterRejectedError
from .errors import AdapterUnavailableError
from .errors import PaymentActionRequiredError
from .errors import PaymentDeclinedError
from .errors import PaymentError
from .errors import PaymentTokenError
from .errors import PaymentUnavailableError
from .extension import ACP
from .models import CheckoutSession
from .models import FulfillmentOption
from .models import Message
from .models import Order
from .models import PricedLine
from .models import Quote
from .models import Status
from .payments.base import ChargeRequest
from .payments.base import ChargeResult
from .payments.base import PaymentProcessor
from .store import open_storage
from .store.base import Storage

__all__ = [
    "ACP",
    "ACPError",
    "AdapterError",
    "AdapterRejectedError",
    "AdapterUnavailableError",
    "ChargeRequest",
    "ChargeResult",
    "CheckoutService",
    "CheckoutSession",
    "FulfillmentOption",
    "Message",
    "Order",
    "PaymentActionRequiredError",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentProcessor",
    "PaymentTokenError",
    "PaymentUnavailableError",
    "PlatformAdapter",
    "PricedLine",
    "Quote",
    "QuoteRequest",
    "Status",
    "Storage",
    "open_storage",
]
