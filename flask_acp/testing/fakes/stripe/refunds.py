"""Refunds (``POST /v1/refunds``, ``GET /v1/refunds/{id}``) and charges
(``GET /v1/charges/{id}``): refunds sum to at most ``amount_received``."""

from __future__ import annotations

import copy

from .payment_intents import PaymentIntents
from .wire import JSONDict
from .wire import StripeError
from .wire import new_id
from .wire import unit_error


class Refunds(PaymentIntents):
    """The refund and charge endpoints (a layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`)."""

    def _do_refund_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        if "payment_intent" in params:
            intent = self._pi(params["payment_intent"])
        elif "charge" in params:
            charge = self._charges.get(params["charge"])
            if charge is None:
                raise StripeError(400, f"No such charge: '{params['charge']}'",
                                  code="resource_missing", param="charge")
            intent = self._pi(charge["payment_intent"])
        else:
            raise StripeError(400, "One of the following params should be provided for this "
                                   "request: payment_intent or charge.",
                              code="parameter_missing", param="payment_intent")
        if intent["amount_received"] <= 0:
            raise StripeError(400, f"This PaymentIntent ({intent['id']}) does not have a "
                                   "successful charge to refund.", code="charge_not_refundable",
                              param="payment_intent")
        charge = self._charges[intent["latest_charge"]]
        remaining = intent["amount_received"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(400, f"Charge {charge['id']} has already been refunded.",
                              code="charge_already_refunded")
        amount = params.get("amount", remaining)
        refused = unit_error(amount, intent["currency"])
        if refused is not None:
            raise refused
        if amount > remaining:
            raise StripeError(400, f"Refund amount ({amount}) is greater than unrefunded amount "
                                   f"on charge ({remaining})", code="amount_too_large",
                              param="amount")
        refund = {"id": new_id("re"), "object": "refund", "amount": amount,
                  "balance_transaction": None, "charge": charge["id"], "created": self.now(),
                  "currency": intent["currency"], "metadata": params.get("metadata") or {},
                  "payment_intent": intent["id"], "reason": params.get("reason"),
                  "status": "succeeded"}
        self._refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= intent["amount_received"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return 200, copy.deepcopy(refund)

    def _do_refund_retrieve(self, params: JSONDict, refund_id: str) -> tuple[int, JSONDict]:
        refund = self._refunds.get(refund_id)
        if refund is None:
            raise StripeError(404, f"No such refund: '{refund_id}'", code="resource_missing", param="id")
        return 200, self._expanded(refund, params)

    def _do_account_retrieve(self, params: JSONDict) -> tuple[int, JSONDict]:
        """``GET /v1/account``: the account of the key (a few fields)."""
        return 200, {"id": self.account_id, "object": "account", "charges_enabled": True,
                     "country": "US", "default_currency": "usd", "type": "standard"}

    def _do_charge_retrieve(self, params: JSONDict, charge_id: str) -> tuple[int, JSONDict]:
        charge = self._charges.get(charge_id)
        if charge is None:
            raise StripeError(404, f"No such charge: '{charge_id}'", code="resource_missing",
                              param="id")
        return 200, self._expanded(charge, params)
