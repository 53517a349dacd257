"""PaymentIntents: create (and charge a token with ``confirm``), retrieve,
capture and cancel; the charges and payment methods they make."""

from __future__ import annotations

import copy
import uuid

from .tokens import TEST_PAYMENT_METHODS
from .tokens import SandboxCard
from .tokens import Tokens
from .wire import JSONDict
from .wire import StripeError
from .wire import amount_error
from .wire import new_id
from .wire import unit_error

_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")


class PaymentIntents(Tokens):
    """The PaymentIntent endpoints (a layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`)."""

    def _pi(self, pi_id: str) -> JSONDict:
        pi = self._payment_intents.get(pi_id)
        if pi is None:
            raise StripeError(404, f"No such payment_intent: '{pi_id}'", code="resource_missing",
                              param="intent")
        return pi

    def _expanded(self, obj: JSONDict, params: JSONDict) -> JSONDict:
        out = copy.deepcopy(obj)
        for path in params.get("expand") or []:
            if out.get("object") == "payment_intent" and path == "latest_charge":
                out["latest_charge"] = copy.deepcopy(self._charges.get(obj["latest_charge"] or ""))
            elif out.get("object") == "payment_intent" and path == "payment_method":
                out["payment_method"] = copy.deepcopy(
                    self._payment_methods.get(obj["payment_method"] or ""))
            else:
                raise StripeError(400, f"This property cannot be expanded ({path}).",
                                  param="expand")
        return out

    def _new_charge(self, pi: JSONDict, pm: JSONDict, *, paid: bool, captured: bool,
                    failure: SandboxCard | None = None) -> JSONDict:
        charge = {
            "id": new_id("ch"), "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"] if captured else 0, "amount_refunded": 0,
            "captured": captured, "created": self.now(), "currency": pi["currency"],
            "failure_code": failure.code if failure else None,
            "failure_message": failure.message if failure else None,
            "livemode": False, "metadata": dict(pi["metadata"]),
            "outcome": {"type": "issuer_declined" if failure else "authorized",
                        "network_status": ("declined_by_network" if failure
                                           else "approved_by_network"),
                        "reason": failure.decline_code if failure else None,
                        "seller_message": "The bank did not return any further details with "
                                          "this decline." if failure else "Payment complete."},
            "paid": paid, "payment_intent": pi["id"], "payment_method": pm["id"],
            "refunded": False, "status": "failed" if failure else "succeeded",
        }
        self._charges[charge["id"]] = charge
        return charge

    def _capture_money(self, pi: JSONDict, amount: int) -> None:
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        charge = self._charges[pi["latest_charge"]]
        charge.update(captured=True, amount_captured=amount)
        spt = self._pi_token.get(pi["id"])
        if spt is not None:
            self._tokens[spt]["usage_details"]["amount_captured"]["value"] += amount
        self._emit("payment_intent.succeeded", pi)

    def _do_pi_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        amount, currency = params["amount"], params["currency"].lower()
        refused = amount_error(amount, currency)
        if refused is not None:
            raise refused
        pmd = params.get("payment_method_data")
        spt = (pmd or {}).get("shared_payment_granted_token")
        if pmd is not None and spt is None:
            raise StripeError(400, "FakeStripe only supports payment_method_data with "
                                   "shared_payment_granted_token.", param="payment_method_data")
        token = self._usable_token(spt, amount, currency) if spt is not None else None
        confirm = params.get("confirm", False)
        if confirm and token is None:
            raise StripeError(400, "You cannot confirm this PaymentIntent because it's missing a "
                                   "payment method.", code="payment_intent_unexpected_state")
        pi_id = new_id("pi")
        pi: JSONDict = {
            "id": pi_id, "object": "payment_intent", "amount": amount,
            "amount_capturable": 0, "amount_received": 0,
            "automatic_payment_methods": params.get("automatic_payment_methods"),
            "canceled_at": None, "cancellation_reason": None,
            "capture_method": params.get("capture_method", "automatic"),
            "client_secret": f"{pi_id}_secret_{uuid.uuid4().hex[:24]}",
            "confirmation_method": "automatic", "created": self.now(), "currency": currency,
            "customer": params.get("customer"), "description": params.get("description"),
            "last_payment_error": None, "latest_charge": None, "livemode": False,
            "metadata": params.get("metadata") or {}, "next_action": None,
            "payment_method": None, "payment_method_types": ["card"],
            "receipt_email": params.get("receipt_email"), "shipping": params.get("shipping"),
            "status": "requires_confirmation" if token else "requires_payment_method",
        }
        self._payment_intents[pi_id] = pi
        if token is None or not confirm:
            return 200, self._expanded(pi, params)

        card = TEST_PAYMENT_METHODS[self._token_pm[token["id"]]]
        details = token["payment_method_details"]
        pm = {"id": new_id("pm"), "object": "payment_method", "type": "card",
              "billing_details": copy.deepcopy(details["billing_details"]),
              "card": copy.deepcopy(details["card"]), "created": self.now(), "customer": None,
              "livemode": False, "metadata": {}}
        self._payment_methods[pm["id"]] = pm
        pi["payment_method"] = pm["id"]
        if card.outcome == "requires_action" and params.get("error_on_requires_action"):
            card = SandboxCard(card.brand, card.last4, "declined", "authentication_required",
                                     "authentication_required",
                                     "Your card was declined. This transaction requires "
                                     "authentication.")
        if card.outcome == "declined":
            charge = self._new_charge(pi, pm, paid=False, captured=False, failure=card)
            error = {"type": "card_error", "code": card.code, "decline_code": card.decline_code,
                     "message": card.message, "charge": charge["id"],
                     "doc_url": "https://stripe.com/docs/error-codes/"
                                + str(card.code).replace("_", "-"),
                     "payment_method": copy.deepcopy(pm)}
            pi.update(status="requires_payment_method", latest_charge=charge["id"],
                      last_payment_error=error, payment_method=None)
            self._emit("payment_intent.payment_failed", pi)
            raise StripeError(402, str(card.message), type="card_error", code=card.code,
                              decline_code=card.decline_code, charge=charge["id"],
                              payment_intent=copy.deepcopy(pi), payment_method=copy.deepcopy(pm))
        if card.outcome == "requires_action":
            pi.update(status="requires_action", next_action={
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                   "stripe_js": "https://hooks.stripe.com/fake/3ds",
                                   "source": new_id("src")}})
            self._emit("payment_intent.requires_action", pi)
            return 200, self._expanded(pi, params)

        manual = pi["capture_method"] == "manual"
        charge = self._new_charge(pi, pm, paid=True, captured=not manual)
        pi["latest_charge"] = charge["id"]
        self._pi_token[pi_id] = token["id"]
        self._charged.add(pi_id)
        token.update(deactivated_at=self.now(), deactivated_reason="consumed")
        self._emit("shared_payment.granted_token.used", token)
        if manual:
            pi.update(status="requires_capture", amount_capturable=amount)
            self._emit("payment_intent.amount_capturable_updated", pi)
        else:
            self._capture_money(pi, amount)
        return 200, self._expanded(pi, params)

    def _do_pi_retrieve(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        return 200, self._expanded(self._pi(pi_id), params)

    def _do_pi_capture(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        intent = self._pi(pi_id)
        if intent["status"] != "requires_capture":
            raise StripeError(400, f"This PaymentIntent could not be captured because it has a "
                                   f"status of {intent['status']}. Only a PaymentIntent with one "
                                   "of the following statuses may be captured: requires_capture.",
                              code="payment_intent_unexpected_state")
        amount: int = params.get("amount_to_capture") or intent["amount_capturable"]
        refused = unit_error(amount, intent["currency"], "amount_to_capture")
        if refused is not None:
            raise refused
        if amount > intent["amount_capturable"]:
            raise StripeError(400, f"The amount to capture ({amount}) must be less than or equal "
                                   f"to the amount capturable ({intent['amount_capturable']}).",
                              code="amount_too_large", param="amount_to_capture")
        intent["metadata"].update(params.get("metadata") or {})
        self._capture_money(intent, amount)
        return 200, self._expanded(intent, params)

    def _do_pi_cancel(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        intent = self._pi(pi_id)
        if intent["status"] not in _CANCELABLE:
            raise StripeError(400, f"You cannot cancel this PaymentIntent because it has a status "
                                   f"of {intent['status']}. Only a PaymentIntent with one of the "
                                   f"following statuses may be canceled: {', '.join(_CANCELABLE)}.",
                              code="payment_intent_unexpected_state")
        intent.update(status="canceled", canceled_at=self.now(), amount_capturable=0,
                      next_action=None,
                      cancellation_reason=params.get("cancellation_reason"))
        self._emit("payment_intent.canceled", intent)
        return 200, self._expanded(intent, params)

