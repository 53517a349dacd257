"""The payment port: charge the credential an agent hands over at ``complete``."""

from __future__ import annotations

import dataclasses
import typing as t

from ..models import JSON


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChargeRequest:
    """One charge.

    :ivar idempotency_key: the processor-side idempotency key; the same key
        must never produce a second charge.
    :ivar amount: minor units of ``currency``; always the session's own total.
    :ivar currency: lowercase ISO 4217 code.
    :ivar token: the credential token (``payment_data.instrument.credential.token``).
    """

    idempotency_key: str
    amount: int
    currency: str
    token: str
    handler_id: str
    checkout_session_id: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChargeResult:
    """A successful charge (or authorization, with manual capture).

    :ivar payment_id: the processor's id (a Stripe PaymentIntent id).
    :ivar amount: minor units actually charged.
    :ivar status: ``succeeded`` or ``requires_capture``.
    """

    payment_id: str
    amount: int
    currency: str
    status: str = "succeeded"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RefundResult:
    """A refund as the processor reports it.

    :ivar id: the processor's refund id (a Stripe ``re_...``).
    :ivar amount: minor units refunded.
    :ivar status: ``pending``, ``succeeded`` or ``failed``.
    """

    id: str
    amount: int
    currency: str
    status: str


class PaymentProcessor(t.Protocol):
    """What the checkout service needs from a payment processor."""

    def handlers(self) -> list[dict[str, JSON]]:
        """``PaymentHandler`` objects to advertise in ``capabilities.payment.handlers``."""
        ...

    def time_budget(self) -> float:
        """Seconds one :meth:`charge` can take at the most, every network retry
        and timeout included. The session lock's lease must exceed it (checked
        at start-up), and stock is held at least this long past the moment the
        charge starts."""
        ...

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge ``request.amount``; idempotent per ``request.idempotency_key``.

        :raises PaymentDeclinedError: declined; the session stays payable.
        :raises PaymentTokenError: the credential is unusable.
        :raises PaymentActionRequiredError: 3DS needed.
        :raises PaymentUnavailableError: outcome unknown; retry later.
        """
        ...

    def capture(self, payment_id: str, *, amount: int, idempotency_key: str) -> ChargeResult:
        """Capture ``amount`` minor units of an authorization (manual capture).

        :raises PaymentUnavailableError: retry later.
        :raises PaymentDeclinedError: the authorization cannot be captured (expired...).
        """
        ...

    def void(self, payment_id: str, *, idempotency_key: str) -> None:
        """Release an uncaptured authorization. Idempotent.

        :raises PaymentUnavailableError: retry later.
        """
        ...

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        """Refund ``amount`` minor units of a captured payment; idempotent per key.

        :raises PaymentUnavailableError: retry later (the refund may have happened:
            retry with the same key).
        :raises PaymentDeclinedError: the processor refused the refund.
        """
        ...

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The successful charge made under ``idempotency_key``, if any.

        Used to reconcile an attempt whose outcome was unknown before charging
        with another credential.

        :raises PaymentUnavailableError: the processor cannot answer now.
        """
        ...
