"""Where money moves back: capture, release, refund, give back — once.

Both the checkout service (a paid order that cannot be placed, a stray
charge) and the order service (cancellation, refunds, capture at shipment)
go through :class:`Settlement`, so every processor call after the charge uses
the same idempotency-key scheme and the same translation of processor
failures (:func:`unavailable`: ``UnavailableError`` with the processor's
``retry_after`` seconds).
"""

from __future__ import annotations

import logging

from .errors import InvalidRequestError
from .errors import PaymentDeclinedError
from .errors import PaymentError
from .errors import PaymentProviderError
from .errors import PaymentUnavailableError
from .errors import UnavailableError
from .models import PaymentRecord
from .payments.base import ChargeResult
from .payments.base import PaymentProcessor
from .payments.base import RefundResult

log = logging.getLogger("flask_acp")


def unavailable(exc: PaymentError, message: str = "The payment processor is unavailable; retry the request.",
                *, code: str = "service_unavailable") -> UnavailableError:
    """The :class:`UnavailableError` for a processor failure: ``retry_after``
    from the processor when it said so, else 1 second."""
    return UnavailableError(message, code=code, retry_after=getattr(exc, "retry_after", 1) or 1)


class Settlement:
    """Capture, release and refund payments through the processor.

    :param payments: the payment processor.
    """

    def __init__(self, payments: PaymentProcessor) -> None:
        self.payments = payments

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The charge made under ``idempotency_key``, if the processor has it.

        :raises UnavailableError: the processor cannot answer now.
        """
        try:
            return self.payments.find_charge(idempotency_key)
        except PaymentUnavailableError as exc:
            raise unavailable(exc) from exc

    def give_back(self, payment: PaymentRecord, *, session_id: str, reason: str) -> str:
        """Release an authorization, or refund a captured payment in full.
        Idempotent (keys derived from the payment's own key); a payment already
        given back costs nothing.

        :returns: the payment's new ``capture_status``: ``voided`` or ``refunded``.
        :raises UnavailableError: the processor cannot do it now (code
            ``order_not_placed``, retry after 5 s); the caller keeps its decision.
        """
        if payment.capture_status in ("refunded", "voided"):
            return payment.capture_status
        if payment.payment_id is None:
            raise ValueError(f"checkout {session_id} has a charge without a payment id")
        try:
            if payment.capture_status == "authorized":
                self.payments.void(payment.payment_id, idempotency_key=f"{payment.idempotency_key}-void")
                return "voided"
            self.payments.refund(payment.payment_id, amount=payment.amount,
                                 idempotency_key=f"{payment.idempotency_key}-refund",
                                 metadata={"acp_checkout_session_id": session_id, "reason": reason})
            return "refunded"
        except PaymentError as exc:
            raise UnavailableError("The order could not be placed and the refund is pending; retry the "
                                   "request.", code="order_not_placed", retry_after=5) from exc

    def give_back_stray(self, charge: ChargeResult, *, session_id: str) -> None:
        """Give back a charge no order accounts for (refund, or release of an
        authorization), idempotent per charge.

        :raises UnavailableError: the processor cannot do it now (retry after 5 s).
        """
        log.error("checkout %s: stray charge %s (%s %s) that no order accounts for: giving it back",
                  session_id, charge.payment_id, charge.amount, charge.currency)
        try:
            if charge.status == "requires_capture":
                self.payments.void(charge.payment_id, idempotency_key=f"acp-stray-{charge.payment_id}-void")
            else:
                self.payments.refund(charge.payment_id, amount=charge.amount,
                                     idempotency_key=f"acp-stray-{charge.payment_id}-refund",
                                     metadata={"acp_checkout_session_id": session_id,
                                               "reason": "stray_charge"})
        except PaymentError as exc:
            raise UnavailableError(f"A stray charge of checkout {session_id} could not be given back yet; "
                                   "retry.", code="stray_charge_pending", retry_after=5) from exc

    def capture(self, payment: PaymentRecord) -> None:
        """Capture an authorization in full (at shipment).

        :raises UnavailableError: retry later.
        :raises InvalidRequestError: the authorization cannot be captured (expired...).
        """
        assert payment.payment_id is not None  # noqa: S101 - callers check
        try:
            self.payments.capture(payment.payment_id, amount=payment.amount,
                                  idempotency_key=f"{payment.idempotency_key}-capture")
        except PaymentUnavailableError as exc:
            raise unavailable(exc, "The payment processor is unavailable; retry.") from exc
        except (PaymentDeclinedError, PaymentProviderError) as exc:
            raise InvalidRequestError(f"The authorization could not be captured: {exc.user_message}",
                                      code="capture_failed") from exc

    def void(self, payment: PaymentRecord) -> None:
        """Release an authorization (a canceled order).

        :raises UnavailableError: retry later.
        """
        assert payment.payment_id is not None  # noqa: S101 - callers check
        try:
            self.payments.void(payment.payment_id, idempotency_key=f"{payment.idempotency_key}-void")
        except PaymentUnavailableError as exc:
            raise unavailable(exc, "The payment processor is unavailable; run the cancellation again.") \
                from exc

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        """Refund ``amount`` minor units of a captured payment.

        :raises UnavailableError: the processor cannot answer now (retry with the same key).
        :raises PaymentDeclinedError, PaymentProviderError: the processor refused it.
        """
        try:
            return self.payments.refund(payment_id, amount=amount, idempotency_key=idempotency_key,
                                        metadata=metadata)
        except PaymentUnavailableError as exc:
            raise unavailable(exc, f"The payment processor is unavailable; retry the refund "
                                   f"({idempotency_key}).") from exc
