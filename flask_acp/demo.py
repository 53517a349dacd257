"""An agent's purchase, scripted: ``flask acp demo-purchase`` (test mode only)."""

from __future__ import annotations

import collections.abc as cabc
import typing as t
import uuid

import requests

from .errors import InvalidRequestError
from .payments import stripe_amounts
from .payments.stripe import StripePaymentProcessor
from .testing.fake_stripe import mint_granted_token

if t.TYPE_CHECKING:
    from .state import ACPState

DEMO_ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
                "state": "CA", "country": "US", "postal_code": "94131"}


def demo_purchase(state: ACPState, *, base_url: str, api_key: str, items: cabc.Sequence[str],
                  payment_method: str, echo: cabc.Callable[[str], None]) -> dict[str, t.Any]:
    """Run create -> update (address) -> mint a test SPT -> complete against
    ``base_url`` and return the completed session.

    :raises InvalidRequestError: this app does not use Stripe in test mode, or a
        step failed or the session did not complete (the message gives the
        server's answer, e.g. ``payment_declined``).
    """
    payments = state.payments
    if not isinstance(payments, StripePaymentProcessor) or not payments.test_mode:
        raise InvalidRequestError("demo-purchase needs the Stripe processor in test mode "
                                  "(ACP_STRIPE_SECRET_KEY=sk_test_..., or the demo's fake Stripe).")
    version = state.settings.api_versions[0]
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {api_key}", "API-Version": version,
                         "Content-Type": "application/json"})
    base = base_url.rstrip("/") + state.settings.url_prefix

    def post(path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        response = http.post(base + path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())},
                             timeout=60)
        data = t.cast(dict[str, t.Any], response.json())
        if response.status_code >= 400:
            raise InvalidRequestError(f"POST {path} -> {response.status_code}: {data.get('message')}")
        return data

    with http:
        session = post("/checkout_sessions", {
            "currency": "usd", "capabilities": {},
            "line_items": [{"id": item, "quantity": 1} for item in items]})
        echo(f"created {session['id']}: {session['status']}")
        session = post(f"/checkout_sessions/{session['id']}", {
            "fulfillment_details": {"name": DEMO_ADDRESS["name"], "email": "ada@example.com",
                                    "address": DEMO_ADDRESS}})
        total = next(x["amount"] for x in session["totals"] if x["type"] == "total")
        echo(f"updated: {session['status']}, total {total} {session['currency']} (minor units)")
        if session["status"] != "ready_for_payment":
            raise InvalidRequestError(f"the session is not payable: {session['messages']}")
        try:
            token = mint_granted_token(payments.client, payment_method=payment_method,
                                       currency=session["currency"],
                                       max_amount=stripe_amounts.to_stripe(total, session["currency"]),
                                       spt_api_version=payments.spt_api_version)
        except Exception as exc:  # any SDK failure is reported as is
            raise InvalidRequestError(f"could not mint a test token: {exc}") from exc
        echo(f"minted test token {token}")
        handler = session["capabilities"]["payment"]["handlers"][0]["id"]
        session = post(f"/checkout_sessions/{session['id']}/complete", {"payment_data": {
            "handler_id": handler,
            "instrument": {"type": "card", "credential": {"type": "spt", "token": token}}}})
        if session["status"] != "completed":  # e.g. declined: 200 with a message
            problems = "; ".join(f"{m.get('code')}: {m.get('content')}" for m in session["messages"])
            raise InvalidRequestError(f"the purchase did not complete ({session['status']}): {problems}")
        echo(f"completed: {session['status']}, order {session['order']['id']}")
        return session
