"""An agent's purchase, scripted: ``flask acp demo-purchase`` (test mode only).

The token is minted on the Stripe the *server* charges: its payment handler's
``config.api_base`` when it advertises one (``ACP_STRIPE_DEMO``, the example
app's fake Stripe), else this app's own Stripe (a real ``sk_test_`` key, the
same account as the server's).
"""

from __future__ import annotations

import collections.abc as cabc
import time
import typing as t
import urllib.parse
import uuid

import requests
import stripe

from .errors import InvalidRequestError
from .payments import stripe_amounts
from .payments.stripe import StripePaymentProcessor

if t.TYPE_CHECKING:
    from .state import ACPState

DEMO_ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
                "state": "CA", "country": "US", "postal_code": "94131"}


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash.

    :raises InvalidRequestError: not an ``http://`` or ``https://`` URL with a host
        (``127.0.0.1:8000`` alone is refused: a scheme is needed).
    """
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidRequestError(f"--base-url {base_url!r} is not a URL: give its scheme and host, "
                                  "e.g. http://127.0.0.1:8000")
    return base_url.rstrip("/")


def mint_test_token(client: stripe.StripeClient, *, payment_method: str, currency: str, max_amount: int,
                    spt_api_version: str, expires_in: int = 3600) -> str:
    """A test-mode SharedPaymentGrantedToken (``spt_…``) through Stripe's test helper
    ``POST /v1/test_helpers/shared_payment/granted_tokens`` (stripe.md §4).

    :param max_amount: a Stripe amount (:func:`flask_acp.payments.stripe_amounts.to_stripe`).
    :raises stripe.StripeError: as the API answers.
    """
    response = client.raw_request(
        "post", "/v1/test_helpers/shared_payment/granted_tokens", stripe_version=spt_api_version,
        payment_method=payment_method,
        usage_limits={"currency": currency, "max_amount": max_amount,
                      "expires_at": int(time.time()) + expires_in})
    return str(client.deserialize(response, api_mode="V1")["id"])


def _minting_client(payments: object, config: cabc.Mapping[str, t.Any]) -> StripePaymentProcessor:
    """This app's Stripe processor, pointed at the server's advertised ``api_base``."""
    if config.get("psp") != "stripe" or config.get("environment") != "test":
        raise InvalidRequestError("the server does not charge a Stripe account in test mode: "
                                  "demo-purchase only buys in test mode")
    if not isinstance(payments, StripePaymentProcessor) or not payments.test_mode:
        raise InvalidRequestError("demo-purchase needs a Stripe test key in this app too "
                                  "(ACP_STRIPE_SECRET_KEY=sk_test_..., or the demo's fake Stripe)")
    api_base = config.get("api_base")
    if not isinstance(api_base, str):
        return payments
    return payments.pointed_at(api_base)


def demo_purchase(state: ACPState, *, base_url: str, api_key: str, items: cabc.Sequence[str],
                  payment_method: str, echo: cabc.Callable[[str], None]) -> dict[str, t.Any]:
    """Run create -> update (address) -> mint a test SPT -> complete against
    ``base_url`` and return the completed session.

    :raises InvalidRequestError: ``base_url`` is no URL or does not answer, the
        server does not charge Stripe in test mode, a step failed or the session
        did not complete (the message gives the server's answer, e.g.
        ``payment_declined``).
    """
    base = check_base_url(base_url) + state.settings.url_prefix
    version = state.settings.api_versions[0]
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {api_key}", "API-Version": version,
                         "Content-Type": "application/json"})

    def post(path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        try:
            response = http.post(base + path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())},
                                 timeout=60)
        except requests.ConnectionError:
            raise InvalidRequestError(f"no ACP server answers at {base_url}: start it (python3 "
                                      "example_app.py) or fix --base-url") from None
        except requests.RequestException as exc:
            raise InvalidRequestError(f"POST {base}{path} failed: {type(exc).__name__}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise InvalidRequestError(f"POST {base}{path} -> {response.status_code}, not an ACP answer "
                                      "(is --base-url the ACP server, with its ACP_URL_PREFIX?)")
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
        handler = session["capabilities"]["payment"]["handlers"][0]
        minting = _minting_client(state.payments, handler.get("config") or {})
        try:
            token = mint_test_token(minting.client, payment_method=payment_method,
                                    currency=session["currency"],
                                    max_amount=stripe_amounts.to_stripe(total, session["currency"]),
                                    spt_api_version=minting.spt_api_version)
        except Exception as exc:  # any SDK failure is reported as is
            raise InvalidRequestError(f"could not mint a test token: {exc}") from exc
        echo(f"minted test token {token} on {handler['config'].get('api_base') or 'Stripe'}")
        session = post(f"/checkout_sessions/{session['id']}/complete", {"payment_data": {
            "handler_id": handler["id"],
            "instrument": {"type": "card", "credential": {"type": "spt", "token": token}}}})
        if session["status"] != "completed":  # e.g. declined: 200 with a message
            problems = "; ".join(f"{m.get('code')}: {m.get('content')}" for m in session["messages"])
            raise InvalidRequestError(f"the purchase did not complete ({session['status']}): {problems}")
        echo(f"completed: {session['status']}, order {session['order']['id']}")
        return session
