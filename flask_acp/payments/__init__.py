"""Payment processors (the payment port)."""

from __future__ import annotations

from .base import ChargeRequest as ChargeRequest
from .base import ChargeResult as ChargeResult
from .base import PaymentProcessor as PaymentProcessor
from .base import RefundResult as RefundResult
