"""The payment port: charge the credential an agent hands over at ``complete``."""

from __future__ import annotations

import dataclasses
import decimal
import typing as t

from iso4217 import Currency

from ..errors import PaymentError
from ..models import JSON
from ..models import Message


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PaymentHandler:
    """A way to pay the processor accepts, described as data: the wire
    version renders it (ACP 2026-04-17 ``PaymentHandler``) and the checkout
    core checks ``complete``'s ``payment_data`` against it, once.

    :ivar id: what agents send as ``payment_data.handler_id``.
    :ivar name: the handler's reverse-DNS name (``dev.acp.tokenized.card``).
    :ivar instrument_types: accepted ``payment_data.instrument.type`` values.
    :ivar credential_types: accepted ``instrument.credential.type`` values.
    :ivar config: the handler's public ``config`` object.
    """

    id: str
    name: str
    version: str
    spec: str
    psp: str
    display_name: str | None = None
    requires_delegate_payment: bool = True
    requires_pci_compliance: bool = False
    config_schema: str | None = None
    instrument_schemas: tuple[str, ...] = ()
    config: dict[str, JSON] = dataclasses.field(default_factory=dict)
    instrument_types: tuple[str, ...] = ("card",)
    credential_types: tuple[str, ...] = ("spt",)


def tokenized_card_handler(*, id: str, psp: str, display_name: str,
                           config: dict[str, JSON]) -> PaymentHandler:
    """The ``dev.acp.tokenized.card`` handler (version 2026-01-22): a card
    instrument paid with a delegated-payment token (``spt``)."""
    return PaymentHandler(
        id=id, name="dev.acp.tokenized.card", version="2026-01-22",
        spec="https://acp.dev/handlers/tokenized.card", psp=psp, display_name=display_name,
        requires_delegate_payment=True, requires_pci_compliance=False,
        config_schema="https://acp.dev/schemas/handlers/tokenized.card/config.json",
        instrument_schemas=("https://acp.dev/schemas/handlers/tokenized.card/instrument.json",),
        config=config, instrument_types=("card",), credential_types=("spt",))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChargeRequest:
    """One charge.

    :ivar idempotency_key: the processor-side idempotency key; the same key
        must never produce a second charge.
    :ivar amount: minor units of ``currency``; always the session's own total.
    :ivar currency: lowercase ISO 4217 code.
    :ivar token: the credential token (``payment_data.instrument.credential.token``).
    :ivar authentication_result: the agent's 3-D Secure ``AuthenticationResult``
        (``{outcome, outcome_details?}``, ACP 2025-12-12+) when it sent one; a
        processor that can import external authentication uses it, others ignore it.
    """

    idempotency_key: str
    amount: int
    currency: str
    token: str
    handler_id: str
    checkout_session_id: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    authentication_result: dict[str, t.Any] | None = None


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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AmountProblem:
    """An amount the processor cannot charge (see :meth:`PaymentProcessor.amount_problem`).

    :ivar code: the ACP ``MessageError`` code it becomes: ``invalid`` (not a
        multiple of ``limit``, e.g. a three-decimal currency on Stripe),
        ``minimum_not_met`` (below ``limit``) or ``maximum_exceeded`` (above ``limit``).
    :ivar amount: the refused amount, minor units of ``currency``.
    :ivar currency: lowercase ISO 4217 code.
    :ivar limit: minor units of ``currency``: the step, minimum or maximum
        broken; ``None`` when the processor refused without saying which
        (a refusal at charge time, e.g. a minimum after currency conversion).
    """

    code: t.Literal["invalid", "minimum_not_met", "maximum_exceeded"]
    amount: int
    currency: str
    limit: int | None = None

    def message(self) -> Message:
        """The ``messages[]`` error that keeps the session ``not_ready_for_payment``:
        ``param`` ``$.totals``, text from :mod:`flask_acp.i18n` with the
        amounts in major units (``"3.988 KWD"``)."""
        code = self.currency.upper()
        args = {"total": f"{format_minor(self.amount, code)} {code}", "currency": code}
        if self.limit is None:
            key = "amount_not_chargeable"
        elif self.code == "invalid":
            key, args["step"] = "amount_not_multiple", format_minor(self.limit, code)
        else:
            key = "amount_below_minimum" if self.code == "minimum_not_met" else "amount_above_maximum"
            args["limit"] = f"{format_minor(self.limit, code)} {code}"
        return Message(type="error", code=self.code, param="$.totals",
                       resolution="requires_buyer_input", text_key=key, text_args=args)


def format_minor(amount: int, currency: str) -> str:
    """``amount`` minor units of ``currency`` (ISO 4217, any case) as a
    decimal string with the currency's ISO exponent: ``(3988, "kwd") ->
    "3.988"``, ``(50, "usd") -> "0.50"``, ``(50, "jpy") -> "50"``. Display only."""
    member = Currency.__members__.get(currency.upper())
    exponent = int(member.exponent) if member is not None and member.exponent is not None else 0
    return str(decimal.Decimal(amount).scaleb(-exponent).quantize(decimal.Decimal(1).scaleb(-exponent)))


class PaymentProcessor(t.Protocol):
    """What the checkout service needs from a payment processor."""

    def handlers(self) -> list[PaymentHandler]:
        """The handlers to advertise in ``capabilities.payment.handlers``."""
        ...

    def time_budget(self) -> float:
        """Seconds one :meth:`charge` can take at the most, every network retry
        and timeout included. The session lock's lease must exceed it (checked
        at start-up), and stock is held at least this long past the moment the
        charge starts."""
        ...

    def amount_problem(self, amount: int, currency: str) -> AmountProblem | None:
        """Why the processor cannot charge ``amount`` minor units of
        ``currency`` (lowercase ISO 4217), or ``None`` when it can.

        The processor's own amount rules (a step such as Stripe's three-decimal
        rule, its minimum and maximum charge), stated without a network call.
        The checkout calls it whenever it quotes a session total; an answer
        becomes an error message (:meth:`AmountProblem.message`) and the
        session stays ``not_ready_for_payment``, so it is never charged.
        """
        ...

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge ``request.amount``; idempotent per ``request.idempotency_key``.

        :raises PaymentDeclinedError: declined; the session stays payable.
        :raises PaymentAmountError: the processor refused the amount itself
            (nothing charged; the total must change).
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


class PaymentAmountError(PaymentError):
    """The processor refused the amount itself: below its minimum, above its
    maximum, or not a multiple of its step (Stripe's three-decimal rule).
    Nothing was charged; the session's total must change before it can be paid.

    :param problem: what was refused, as :meth:`PaymentProcessor.amount_problem
        <flask_acp.payments.base.PaymentProcessor.amount_problem>` would say it.
    """

    def __init__(self, user_message: str, *, problem: AmountProblem) -> None:
        super().__init__(user_message, decline_code=problem.code)
        self.problem = problem
