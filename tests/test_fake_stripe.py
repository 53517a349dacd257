"""flask_acp.testing.fake_stripe driven by the real stripe.StripeClient over HTTP (no mocks)."""

from __future__ import annotations

import collections.abc as cabc
import threading
import time
import typing as t

import pytest
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.testing.fake_stripe import SPT_PARAM
from flask_acp.testing.fake_stripe import TOKEN_INVALID_CODE
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_stripe import mint_granted_token
from flask_acp.testing.fake_stripe import stripe_signature_header

PREVIEW = "2026-09-30.preview"
MakeClient = t.Callable[..., stripe.StripeClient]


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server
    assert server.server_errors == []


@pytest.fixture
def make_client(fake: FakeStripe) -> cabc.Iterator[MakeClient]:
    http_clients: list[stripe.RequestsClient] = []

    def make(retries: int = 0, timeout: float = 5.0, api_key: str | None = None) -> stripe.StripeClient:
        http = stripe.RequestsClient(timeout=timeout)
        http_clients.append(http)
        return stripe.StripeClient(api_key or fake.api_key, base_addresses={"api": fake.url},
                                   max_network_retries=retries, http_client=http)

    yield make
    for http in http_clients:
        http.close()


@pytest.fixture
def client(make_client: MakeClient) -> stripe.StripeClient:
    return make_client()


def spt_params(spt: str, amount: int = 830, **extra: t.Any) -> dict[str, t.Any]:
    """The charge call of stripe.md §5 (minus description/shipping)."""
    return {"amount": amount, "currency": "usd", "confirm": True,
            "payment_method_data": {"shared_payment_granted_token": spt},
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {"acp_checkout_session_id": "cs_1"}, **extra}


def charge(client: stripe.StripeClient, spt: str, amount: int = 830, *, key: str | None = None,
           **extra: t.Any) -> stripe.PaymentIntent:
    options: dict[str, t.Any] = {"stripe_version": PREVIEW}
    if key:
        options["idempotency_key"] = key
    return client.v1.payment_intents.create(params=spt_params(spt, amount, **extra),
                                            options=options)


def pi_posts(fake: FakeStripe) -> list[str | None]:
    """Idempotency keys of every PI-create request the fake received."""
    return [r.idempotency_key for r in fake.requests
            if r.method == "POST" and r.path == "/v1/payment_intents"]


# --------------------------------------------------------------------------- happy paths

def test_charge_sends_the_documented_wire_form(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    pi = charge(client, spt, key="acp:cs_1:pi:abc")

    assert (pi.status, pi.amount_received, pi.amount_capturable) == ("succeeded", 830, 0)
    assert [pi.id[:3], pi.latest_charge[:3], pi.payment_method[:3]] == ["pi_", "ch_", "pm_"]
    assert pi.last_payment_error is None
    wire = fake.wire_requests[-1]
    assert wire.body == (
        f"amount=830&currency=usd&confirm=true&payment_method_data[shared_payment_granted_token]={spt}"
        "&automatic_payment_methods[enabled]=true&automatic_payment_methods[allow_redirects]=never"
        "&metadata[acp_checkout_session_id]=cs_1")
    assert wire.headers["Stripe-Version"] == PREVIEW
    assert wire.headers["Idempotency-Key"] == "acp:cs_1:pi:abc"
    assert fake.requests[-1] == ("POST", "/v1/payment_intents", "acp:cs_1:pi:abc", {
        "amount": 830, "currency": "usd", "confirm": True,
        "payment_method_data": {"shared_payment_granted_token": spt},
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"acp_checkout_session_id": "cs_1"}})
    assert fake.charges_count() == 1
    token = fake.granted_tokens[spt]
    assert token["deactivated_reason"] == "consumed"
    assert token["usage_details"]["amount_captured"] == {"value": 830, "currency": "usd"}


def test_granted_token_get_through_raw_request(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="eur", max_amount=5000, expires_in=600,
                             shared_metadata={"agent_order": "A1"})
    response = client.raw_request("get", f"/v1/shared_payment/granted_tokens/{spt}",
                                  stripe_version=PREVIEW)
    token = client.deserialize(response, api_mode="V1")
    assert (token.id, token.object) == (spt, "shared_payment.granted_token")
    assert (token.usage_limits.currency, token.usage_limits.max_amount) == ("eur", 5000)
    assert token.usage_limits.expires_at > time.time()
    assert token.deactivated_at is None
    assert token.payment_method_details.card.last4 == "4242"
    assert token.shared_metadata.to_dict() == {"agent_order": "A1"}

    with pytest.raises(stripe.InvalidRequestError, match="Stripe-Version: 2026-09-30.preview"):
        client.raw_request("get", f"/v1/shared_payment/granted_tokens/{spt}")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.raw_request("get", "/v1/shared_payment/granted_tokens/spt_nope", stripe_version=PREVIEW)
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_wrong_api_key_is_an_authentication_error(make_client: MakeClient) -> None:
    with pytest.raises(stripe.AuthenticationError) as exc:
        mint_granted_token(make_client(api_key="sk_test_other"), currency="usd", max_amount=1)
    assert exc.value.http_status == 401


# --------------------------------------------------------------------------- validation

def _fill(value: t.Any, spt: str) -> t.Any:
    if isinstance(value, dict):
        return {k: _fill(v, spt) for k, v in value.items()}
    return spt if value == "SPT" else value


@pytest.mark.parametrize(("params", "param", "code"), [
    ({"payment_method_data": {"shared_payment_token": "SPT"}},
     "payment_method_data[shared_payment_token]", "parameter_unknown"),
    ({"shared_payment_granted_token": "SPT"}, "shared_payment_granted_token", "parameter_unknown"),
    ({"automatic_payment_methods": {"enabled": True, "allow_redirect": "never"}},
     "automatic_payment_methods[allow_redirect]", "parameter_unknown"),
    ({"payment_method_data": {"billing_details": {"name": "Ada"}}},
     "payment_method_data[type]", "parameter_missing"),
    ({"amount": "8.30"}, "amount", "parameter_invalid_integer"),
    ({"capture_method": "later"}, "capture_method", None),
    ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata", None),
    ({"metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]", None),
    ({"metadata": {"k": "v" * 501}}, "metadata[k]", None),
])
def test_bad_parameters_name_the_param(fake: FakeStripe, client: stripe.StripeClient,
                                       params: dict[str, t.Any], param: str, code: str | None) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    body = {**spt_params(spt), **{k: _fill(v, spt) for k, v in params.items()}}
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=body, options={"stripe_version": PREVIEW,
                                                               "idempotency_key": "k1"})
    assert (exc.value.param, exc.value.code, exc.value.http_status) == (param, code, 400)
    # Rejected before execution: nothing charged, nothing saved under the key.
    assert fake.charges_count() == 0
    assert charge(client, spt, key="k1").status == "succeeded"


def test_spt_call_needs_the_preview_version(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    with pytest.raises(stripe.InvalidRequestError, match="preview API version") as exc:
        client.v1.payment_intents.create(params=spt_params(spt))
    assert exc.value.param is None
    assert fake.charges_count() == 0


# --------------------------------------------------------------------------- outcomes

@pytest.mark.parametrize(("payment_method", "code", "decline_code"), [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
])
def test_declines_raise_card_error(fake: FakeStripe, client: stripe.StripeClient,
                                   payment_method: str, code: str, decline_code: str) -> None:
    spt = mint_granted_token(client, payment_method=payment_method, currency="usd", max_amount=830)
    with pytest.raises(stripe.CardError) as exc:
        charge(client, spt)
    assert (exc.value.http_status, exc.value.code) == (402, code)
    assert exc.value.error is not None
    assert exc.value.error.decline_code == decline_code
    assert exc.value.error.payment_intent.status == "requires_payment_method"
    assert fake.charges_count() == 0
    assert fake.granted_tokens[spt]["deactivated_reason"] is None  # a decline does not consume


@pytest.mark.parametrize("problem", ["over_max_amount", "currency", "expired", "revoked", "consumed"])
def test_unusable_token_is_an_invalid_request(fake: FakeStripe, client: stripe.StripeClient,
                                              problem: str) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830, expires_in=60)
    amount, extra = 830, {}
    if problem == "over_max_amount":
        amount = 831
    elif problem == "currency":
        extra = {"currency": "eur"}
    elif problem == "expired":
        fake.advance_clock(61)
    elif problem == "revoked":
        client.raw_request("post", f"/v1/test_helpers/shared_payment/granted_tokens/{spt}/revoke",
                           stripe_version=PREVIEW)
    else:
        charge(client, spt)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        charge(client, spt, amount, **extra)
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (400, TOKEN_INVALID_CODE, SPT_PARAM)
    assert fake.charges_count() == (1 if problem == "consumed" else 0)


#: Stripe's text for an ISK or UGX amount that is not whole units (as merchants report it)
WHOLE_UNITS = "has become effectively zero-decimal and charged amounts must be evenly divisible by 100."


@pytest.mark.parametrize(("currency", "amount", "code", "message"), [
    ("usd", 49, "amount_too_small", "Amount must be at least $0.50 usd"),
    ("gbp", 29, "amount_too_small", "Amount must be at least £0.30 gbp"),
    ("jpy", 49, "amount_too_small", "Amount must be at least ¥50 jpy"),
    ("usd", 100_000_000, "amount_too_large", "Amount must be no more than $999,999.99"),
    ("idr", 1_000_000_000_000, "amount_too_large", "Amount must be no more than 9,999,999,999.99"),
    ("kwd", 5124, "invalid_charge_amount", "Invalid amount: kwd amounts must be a multiple of 10"),
    ("bhd", 1001, "invalid_charge_amount", "Invalid amount: bhd amounts must be a multiple of 10"),
    ("isk", 50_050, "invalid_charge_amount", f"Invalid amount. Currency ISK {WHOLE_UNITS}"),
    ("ugx", 99, "invalid_charge_amount", f"Invalid amount. Currency UGX {WHOLE_UNITS}"),
    ("isk", 100_000_000, "amount_too_large", "Amount must be no more than 999,999"),
])
def test_amounts_stripe_refuses(fake: FakeStripe, client: stripe.StripeClient, currency: str, amount: int,
                                code: str, message: str) -> None:
    """Stripe's amount rules on PaymentIntent create: 400 invalid_request_error on
    ``amount``, before the token is looked at; nothing created, nothing saved."""
    spt = mint_granted_token(client, currency=currency, max_amount=2_000_000_000_000)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        charge(client, spt, amount, currency=currency, key="k-amount")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (400, code, "amount")
    assert exc.value.error is not None
    assert exc.value.error.type == "invalid_request_error"
    assert str(exc.value.error.message).startswith(message)
    assert exc.value.error.doc_url == "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
    assert (fake.payment_intents, fake.charges_count()) == ({}, 0)
    assert fake.granted_tokens[spt]["deactivated_reason"] is None
    # not saved under the key: the same request is refused afresh, not replayed
    with pytest.raises(stripe.InvalidRequestError) as again:
        charge(client, spt, amount, currency=currency, key="k-amount")
    assert again.value.code == code
    assert not any(k.lower() == "idempotent-replayed" for k in (again.value.headers or {}))


@pytest.mark.parametrize(("currency", "amount"), [
    ("usd", 50), ("gbp", 30), ("jpy", 50), ("usd", 99_999_999), ("idr", 999_999_999_999),
    ("kwd", 5120), ("kwd", 10), ("xof", 1),
])
def test_amounts_stripe_accepts(fake: FakeStripe, client: stripe.StripeClient, currency: str,
                                amount: int) -> None:
    spt = mint_granted_token(client, currency=currency, max_amount=amount)
    assert charge(client, spt, amount, currency=currency).status == "succeeded"
    assert fake.charges_count() == 1


def test_isk_capture_and_refund_amounts_must_be_whole_kronur(fake: FakeStripe,
                                                            client: stripe.StripeClient) -> None:
    """ISK counts hundredths that must be evenly divisible by 100, on capture and
    refund as on create: ``invalid_charge_amount`` on the parameter, nothing moved."""
    spt = mint_granted_token(client, currency="isk", max_amount=500_000)
    pi = charge(client, spt, 500_000, currency="isk", capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 250_050})
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (
        400, "invalid_charge_amount", "amount_to_capture")
    assert fake.payment_intents[pi.id]["status"] == "requires_capture"
    assert client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 250_000}).amount_received \
        == 250_000
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 10_001})
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (
        400, "invalid_charge_amount", "amount")
    assert fake.refunds == {}
    assert client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 10_000}).amount == 10_000


def test_unknown_token_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        charge(client, "spt_does_not_exist")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (404, "resource_missing", SPT_PARAM)


def test_requires_action_then_cancel(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, payment_method="pm_card_authenticationRequired",
                             currency="usd", max_amount=830)
    pi = charge(client, spt)
    assert (pi.status, pi.next_action.type) == ("requires_action", "use_stripe_sdk")
    canceled = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    with pytest.raises(stripe.CardError) as exc:  # the other way to ask for it
        charge(client, spt, error_on_requires_action=True)
    assert exc.value.code == "authentication_required"
    assert fake.charges_count() == 0


def test_manual_capture_up_to_the_authorized_amount(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=1000)
    pi = charge(client, spt, 1000, capture_method="manual")
    assert (pi.status, pi.amount_capturable, pi.amount_received) == ("requires_capture", 1000, 0)
    assert fake.charges_count() == 1
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 1001})
    assert exc.value.param == "amount_to_capture"
    captured = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 700})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 700, 0)
    assert fake.granted_tokens[spt]["usage_details"]["amount_captured"]["value"] == 700
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.capture(pi.id)
    assert again.value.code == "payment_intent_unexpected_state"


def test_cancel_validates_reason_and_status(client: stripe.StripeClient) -> None:
    pi = charge(client, mint_granted_token(client, currency="usd", max_amount=830), capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "changed_mind"})
    assert bad.value.param == "cancellation_reason"
    assert client.v1.payment_intents.cancel(pi.id).status == "canceled"
    done = charge(client, mint_granted_token(client, currency="usd", max_amount=830))
    with pytest.raises(stripe.InvalidRequestError, match="status of succeeded"):
        client.v1.payment_intents.cancel(done.id)


def test_partial_and_full_refunds(fake: FakeStripe, client: stripe.StripeClient) -> None:
    pi = charge(client, mint_granted_token(client, currency="usd", max_amount=1000), 1000)
    first = client.v1.refunds.create(params={
        "payment_intent": pi.id, "amount": 300, "reason": "requested_by_customer",
        "metadata": {"acp_refund_id": "r1"}})
    assert (first.amount, first.status, first.payment_intent) == (300, "succeeded", pi.id)
    with pytest.raises(stripe.InvalidRequestError) as over:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 701})
    assert (over.value.param, over.value.code) == ("amount", "amount_too_large")
    rest = client.v1.refunds.create(params={"payment_intent": pi.id})  # amount omitted: remainder
    assert rest.amount == 700
    assert client.v1.refunds.retrieve(first.id).metadata.to_dict() == {"acp_refund_id": "r1"}
    with pytest.raises(stripe.InvalidRequestError) as none_left:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert none_left.value.code == "charge_already_refunded"
    assert sum(r["amount"] for r in fake.refunds.values()) == 1000


def test_search_by_checkout_session_metadata(client: stripe.StripeClient) -> None:
    wanted = charge(client, mint_granted_token(client, currency="usd", max_amount=830))
    charge(client, mint_granted_token(client, currency="usd", max_amount=830),
           metadata={"acp_checkout_session_id": "cs_2"})
    found = client.v1.payment_intents.search(
        params={"query": "metadata['acp_checkout_session_id']:'cs_1'"})
    assert [pi.id for pi in found.data] == [wanted.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.search(params={"query": "status:'succeeded'"})


# --------------------------------------------------------------------------- idempotency & faults

def test_same_key_replays_the_same_payment_intent(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    first = charge(client, spt, key="k-replay")
    second = charge(client, spt, key="k-replay")
    assert second.id == first.id
    assert fake.charges_count() == 1
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers


def test_same_key_other_params_is_an_idempotency_error(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=900)
    charge(client, spt, 830, key="k-same")
    with pytest.raises(stripe.IdempotencyError):
        charge(client, spt, 900, key="k-same")
    assert fake.charges_count() == 1


def test_concurrent_request_with_the_same_key_gets_409(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client()
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("slow", seconds=0.5, path_prefix="/v1/payment_intents")
    results: list[str] = []

    def first_request() -> None:
        http = stripe.RequestsClient(timeout=5)
        try:
            own = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url}, http_client=http)
            results.append(charge(own, spt, key="k-busy").id)
        finally:
            http.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    deadline = time.monotonic() + 5
    while fake.charges_count() == 0 and time.monotonic() < deadline:  # executed, answer pending
        time.sleep(0.01)
    with pytest.raises(stripe.APIError) as busy:
        charge(client, spt, key="k-busy")
    assert busy.value.http_status == 409
    assert busy.value.error is not None
    assert busy.value.error.code == "idempotency_key_in_use"
    thread.join()
    assert charge(client, spt, key="k-busy").id == results[0]  # the 409 was not saved
    assert fake.charges_count() == 1


def test_500_before_execution_is_retried_with_the_same_key(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client(retries=2)
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("500_before", path_prefix="/v1/payment_intents")
    pi = charge(client, spt)
    assert pi.status == "succeeded"
    assert fake.charges_count() == 1
    keys = pi_posts(fake)
    assert len(keys) == 2
    assert keys[0] == keys[1] is not None


def test_500_after_execution_is_saved_and_replayed(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client(retries=2)
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("500_after", path_prefix="/v1/payment_intents")
    with pytest.raises(stripe.APIError) as first:
        charge(client, spt, key="k-500")
    assert first.value.http_status == 500
    assert len(pi_posts(fake)) == 1  # Stripe-Should-Retry: false, so no SDK retry
    with pytest.raises(stripe.APIError) as replay:
        charge(client, spt, key="k-500")
    assert replay.value.http_status == 500
    assert replay.value.headers["Idempotent-Replayed"] == "true"
    assert fake.charges_count() == 1  # the money moved anyway: reconcile
    found = client.v1.payment_intents.search(params={"query": "metadata['acp_checkout_session_id']:'cs_1'"})
    assert [pi.status for pi in found.data] == ["succeeded"]


def test_429_is_not_retried_and_not_saved(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client(retries=2)
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("429", path_prefix="/v1/payment_intents")
    with pytest.raises(stripe.RateLimitError):
        charge(client, spt, key="k-429")
    assert len(pi_posts(fake)) == 1
    assert fake.charges_count() == 0
    assert charge(client, spt, key="k-429").status == "succeeded"


def test_dropped_connection_then_same_key_replays(fake: FakeStripe, client: stripe.StripeClient) -> None:
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("drop_after", path_prefix="/v1/payment_intents")
    with pytest.raises(stripe.APIConnectionError):
        charge(client, spt, key="k-drop")
    assert fake.charges_count() == 1
    pi = charge(client, spt, key="k-drop")
    assert pi.last_response.headers["Idempotent-Replayed"] == "true"
    assert list(fake.payment_intents) == [pi.id]
    assert fake.charges_count() == 1


def test_dropped_connection_is_recovered_by_sdk_retry(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client(retries=2)
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("drop_after", path_prefix="/v1/payment_intents")
    assert charge(client, spt).status == "succeeded"
    assert len(pi_posts(fake)) == 2
    assert fake.charges_count() == 1


def test_slow_answer_times_out_on_the_client(fake: FakeStripe, make_client: MakeClient) -> None:
    client = make_client(timeout=0.3)
    spt = mint_granted_token(client, currency="usd", max_amount=830)
    fake.fail_next("slow", seconds=3, path_prefix="/v1/payment_intents")
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        charge(client, spt)
    assert time.monotonic() - started < 2


# --------------------------------------------------------------------------- webhooks

@pytest.fixture
def receiver() -> cabc.Iterator[tuple[str, list[tuple[str, str]]]]:
    received: list[tuple[str, str]] = []

    @Request.application
    def app(request: Request) -> Response:
        received.append((request.get_data(as_text=True), request.headers["Stripe-Signature"]))
        return Response("ok")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/stripe/webhooks", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_webhook_is_signed_like_stripe(fake: FakeStripe, client: stripe.StripeClient,
                                       receiver: tuple[str, list[tuple[str, str]]]) -> None:
    url, received = receiver
    pi = charge(client, mint_granted_token(client, currency="usd", max_amount=830))
    delivery = fake.send_webhook(url, "payment_intent.succeeded", fake.payment_intents[pi.id],
                                 secret="whsec_test")
    assert delivery.status_code == 200
    assert fake.webhook_log == [delivery]
    body, header = received[0]
    assert stripe.WebhookSignature.verify_header(body, header, "whsec_test")
    event = stripe.Webhook.construct_event(body, header, "whsec_test")
    assert (event.type, event.data.object.id) == ("payment_intent.succeeded", pi.id)
    assert event.api_version == PREVIEW
    stamp = int(header.split(",")[0][2:])
    assert header == stripe.WebhookSignature.generate_signature_header(body, "whsec_test", stamp)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, header, "whsec_other")
    stale = stripe_signature_header(body, "whsec_test", timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, stale, "whsec_test")  # default tolerance 300 s


def test_auto_webhooks_follow_the_actions(fake: FakeStripe, client: stripe.StripeClient,
                                          receiver: tuple[str, list[tuple[str, str]]]) -> None:
    url, received = receiver
    fake.auto_webhooks(url, "whsec_auto")
    pi = charge(client, mint_granted_token(client, currency="usd", max_amount=830))
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    fake.flush_webhooks()
    events = [stripe.Webhook.construct_event(body, header, "whsec_auto") for body, header in received]
    assert [e.type for e in events] == ["shared_payment.granted_token.used", "payment_intent.succeeded",
                                        "refund.created", "charge.refunded"]
    assert events[-1].data.object.amount_refunded == 100
