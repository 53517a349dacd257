"""The base every fake server stands on (flask_acp.testing.fakes.base), checked
through each fake: lifecycle on a free port, an injected clock, the common
faults applied once, signed webhooks with retries and their log, webhook
subscriptions, and the standalone command. Everything over real HTTP."""

from __future__ import annotations

import base64
import collections.abc as cabc
import datetime as dt
import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import requests
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.testing.fakes import COMMON_FAULTS
from flask_acp.testing.fakes import FakeClock
from flask_acp.testing.fakes import FakeServer
from flask_acp.testing.fakes.shopify import FakeShopify
from flask_acp.testing.fakes.stripe import FakeStripe
from flask_acp.testing.fakes.woocommerce import FakeWooCommerce

Fake = FakeServer[t.Any]
SECRET = "s3cret-for-the-base"
T0 = 1_900_000_000  # 2030-03-17T17:46:40Z


class Driver(t.NamedTuple):
    """How to make one fake and reach it over HTTP, for the shared tests."""

    name: str
    make: cabc.Callable[..., Fake]
    #: a cheap request to the fake at a URL that it answers 200, and what
    #: ``fail_next(match=)`` calls it
    request: cabc.Callable[[str, Fake], requests.Response]
    match: str
    #: the fake's clock as its HTTP surface shows it (Unix seconds)
    served_time: cabc.Callable[[Fake], float]
    #: whether a webhook request carries the platform's signature with ``secret``
    signed: cabc.Callable[[dict[str, str], bytes, str], bool]
    #: a webhook topic, and the payload a webhook body of it carries
    topic: str
    payload: cabc.Callable[[bytes], t.Any]
    #: make the fake emit a webhook of the returned topic
    trigger: cabc.Callable[[Fake], str]
    #: ``python -m`` module, and the stream its banner goes to
    module: str
    stream: str

    def probe(self, fake: Fake, url: str | None = None) -> requests.Response:
        return self.request(url or fake.url, fake)


# --- Stripe -------------------------------------------------------------------------------------

def _stripe(fake: Fake) -> FakeStripe:
    assert isinstance(fake, FakeStripe)
    return fake


def _stripe_request(url: str, fake: Fake) -> requests.Response:
    return requests.get(f"{url}/v1/payment_intents/search", timeout=5, auth=(_stripe(fake).api_key, ""),
                        params={"query": "metadata['k']:'v'"})


def _stripe_time(fake: Fake) -> float:
    minted = requests.post(f"{fake.url}/v1/test_helpers/shared_payment/granted_tokens", timeout=5,
                           auth=(_stripe(fake).api_key, ""),
                           headers={"Stripe-Version": _stripe(fake).spt_api_version},
                           data={"payment_method": "pm_card_visa", "usage_limits[currency]": "usd",
                                 "usage_limits[max_amount]": "100"})
    return float(minted.json()["created"])


def _stripe_signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    try:
        return bool(stripe.WebhookSignature.verify_header(body.decode(), headers.get("Stripe-Signature", ""),
                                                          secret))
    except stripe.SignatureVerificationError:
        return False


def _stripe_trigger(fake: Fake) -> str:
    auth = (_stripe(fake).api_key, "")
    created = requests.post(f"{fake.url}/v1/payment_intents", auth=auth, timeout=5,
                            data={"amount": "1000", "currency": "usd"}).json()
    assert requests.post(f"{fake.url}/v1/payment_intents/{created['id']}/cancel", auth=auth, timeout=5).ok
    return "payment_intent.canceled"


# --- Shopify ------------------------------------------------------------------------------------

def _shopify(fake: Fake) -> FakeShopify:
    assert isinstance(fake, FakeShopify)
    return fake


def _shopify_request(url: str, fake: Fake) -> requests.Response:
    return requests.post(f"{url}/admin/api/2026-10/graphql.json", timeout=5,
                         json={"query": "query Probe { shop { name } }"},
                         headers={"X-Shopify-Access-Token": _shopify(fake).access_token})


def _shopify_time(fake: Fake) -> float:
    now = requests.get(f"{fake.url}/__fake__/state", timeout=5).json()["now"]
    return dt.datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()


def _base64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _shopify_signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    return hmac.compare_digest(headers.get("X-Shopify-Hmac-Sha256", ""), _base64_hmac(secret, body))


def _shopify_trigger(fake: Fake) -> str:
    _shopify(fake).emit("orders/updated", {"id": 7, "name": "#1007"})
    return "orders/updated"


# --- WooCommerce --------------------------------------------------------------------------------

def _woo(fake: Fake) -> FakeWooCommerce:
    assert isinstance(fake, FakeWooCommerce)
    return fake


def _woo_request(url: str, fake: Fake) -> requests.Response:
    return requests.get(f"{url}/wp-json/wc/store/v1/cart", timeout=5)


def _woo_time(fake: Fake) -> float:
    return float(_woo_request(fake.url, fake).headers["Nonce-Timestamp"])


def _woo_signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    return hmac.compare_digest(headers.get("X-Wc-Webhook-Signature", ""), _base64_hmac(secret, body))


def _woo_trigger(fake: Fake) -> str:
    woo = _woo(fake)
    created = requests.post(f"{fake.url}/wp-json/wc/v3/orders", timeout=5,
                            auth=(woo.consumer_key, woo.consumer_secret),
                            json={"line_items": [{"product_id": 10, "quantity": 1}]})
    assert created.status_code == 201
    return "order.created"


DRIVERS = [
    Driver("stripe", FakeStripe, _stripe_request, "/v1/payment_intents", _stripe_time, _stripe_signed,
           "payment_intent.succeeded", lambda body: json.loads(body)["data"]["object"], _stripe_trigger,
           "flask_acp.testing.fake_stripe", "stdout"),
    Driver("shopify", FakeShopify, _shopify_request, "Probe", _shopify_time, _shopify_signed,
           "orders/updated", json.loads, _shopify_trigger, "flask_acp.testing.fake_shopify", "stderr"),
    Driver("woocommerce", FakeWooCommerce, _woo_request, "GET /wc/store/v1/cart", _woo_time, _woo_signed,
           "order.updated", json.loads, _woo_trigger, "flask_acp.testing.fake_woocommerce", "stdout"),
]


@pytest.fixture(params=DRIVERS, ids=[d.name for d in DRIVERS])
def driver(request: pytest.FixtureRequest) -> Driver:
    return t.cast(Driver, request.param)


@pytest.fixture
def fake(driver: Driver) -> cabc.Iterator[Fake]:
    with driver.make() as server:
        yield server
    assert server.server_errors == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A webhook endpoint on loopback answering ``statuses`` in turn (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks"

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), request.get_data()))
        return Response("{}", self.statuses.pop(0) if self.statuses else 200, mimetype="application/json")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> cabc.Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


# --- lifecycle ----------------------------------------------------------------------------------

def test_lifecycle_on_a_free_port(driver: Driver) -> None:
    fake = driver.make()
    assert not fake.running
    with fake as served:
        assert served is fake
        assert fake.running
        assert fake.port != 0
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        assert fake.start() is fake  # already serving: returned as is
        assert driver.probe(fake).status_code == 200
        first = fake.url
    assert not fake.running
    with pytest.raises(requests.ConnectionError):
        requests.get(first, timeout=2)
    port = free_port()
    fake.start(port=port)
    try:
        assert (fake.port, fake.url) == (port, f"http://127.0.0.1:{port}")
        assert driver.probe(fake).status_code == 200
    finally:
        fake.stop()
    fake.stop()  # twice is harmless
    assert fake.server_errors == []


# --- clock --------------------------------------------------------------------------------------

def test_an_injected_clock_drives_the_fake(driver: Driver) -> None:
    clock = FakeClock(T0, frozen=True)
    with driver.make(clock=clock) as fake:
        assert fake.clock is clock
        assert fake.timestamp() == T0
        assert driver.served_time(fake) == T0
        clock.advance(90)
        assert driver.served_time(fake) == T0 + 90
        fake.advance_clock(10)  # the fake moves the clock it was given
        assert clock.time() == T0 + 100
        fake.reset()  # a given clock is the test's: reset leaves it alone
        assert clock.time() == T0 + 100
        fake.freeze_clock(False)
        assert not clock.frozen
        assert T0 + 100 <= clock.time() < T0 + 110


def test_an_own_clock_goes_back_to_real_time_on_reset(fake: Fake) -> None:
    fake.advance_clock(3600)
    assert fake.timestamp() > time.time() + 3500
    fake.reset()
    assert abs(fake.timestamp() - time.time()) < 5


def test_one_clock_for_several_fakes() -> None:
    clock = FakeClock(T0, frozen=True)
    with FakeStripe(clock=clock) as pay, FakeShopify(clock=clock) as shop, \
            FakeWooCommerce(clock=clock) as woo:
        shop.advance_clock(60)
        assert [d.served_time(f) for d, f in zip(DRIVERS, (pay, shop, woo), strict=True)] == [T0 + 60] * 3


# --- faults -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "expected"), [
    ("500", 500), ("429", 429), ("500_after", 500), ("drop_after", None), ("timeout", None), ("slow", 200)])
def test_a_common_fault_applies_once(driver: Driver, fake: Fake, kind: str, expected: int | None) -> None:
    assert kind in COMMON_FAULTS
    armed = fake.fail_next(kind, match=driver.match, seconds=0.3)
    assert fake.faults == [armed]
    started = time.monotonic()
    if expected is None:
        with pytest.raises(requests.ConnectionError):
            driver.probe(fake)
    else:
        assert driver.probe(fake).status_code == expected
    if kind in ("timeout", "slow"):
        assert time.monotonic() - started >= 0.3
    assert fake.faults == []
    assert driver.probe(fake).status_code == 200  # once only


def test_faults_match_count_after_and_queue_in_order(driver: Driver, fake: Fake) -> None:
    fake.fail_next("500", match="no such request")
    assert driver.probe(fake).status_code == 200
    fake.clear_faults()
    fake.fail_next("429", match=driver.match, after=1, count=2)
    fake.fail_next("500", match=driver.match)
    assert [driver.probe(fake).status_code for _ in range(5)] == [200, 429, 429, 500, 200]
    with pytest.raises(ValueError, match="unknown fault kind 'nonsense'"):
        fake.fail_next("nonsense")
    with pytest.raises(ValueError, match="count"):
        fake.fail_next("500", count=0)


# --- webhooks -----------------------------------------------------------------------------------

def test_a_signed_webhook_is_retried_and_logged(driver: Driver, fake: Fake, receiver: Receiver) -> None:
    fake.webhook_retries, fake.webhook_retry_delay = 2, 0.0
    receiver.statuses = [503]
    record = fake.send_webhook(receiver.url, driver.topic, {"id": 42, "status": "paid"}, secret=SECRET)
    attempts = fake.webhook_attempts
    assert [(a.attempt, a.status, a.ok) for a in attempts] == [(1, 503, False), (2, 200, True)]
    assert {(a.url, a.topic) for a in attempts} == {(receiver.url, driver.topic)}
    assert len(receiver.requests) == 2  # no retry after the 200
    for (headers, body), attempt in zip(receiver.requests, attempts, strict=True):
        assert body == attempt.body
        assert driver.signed(headers, body, SECRET)
        assert not driver.signed(headers, body, "another secret")
        assert driver.payload(body) == {"id": 42, "status": "paid"}
    assert fake.webhook_log[-1] == record
    assert fake.flush_webhooks() == fake.webhook_log
    fake.reset()
    assert fake.webhook_attempts == []


def test_subscribed_webhooks_follow_the_fakes_events(driver: Driver, fake: Fake, receiver: Receiver) -> None:
    def signed_topics() -> list[str]:
        return [attempt.topic for attempt in fake.webhook_attempts if attempt.topic != "ping"]

    topic = driver.trigger(fake)  # nobody subscribed: nothing sent
    fake.flush_webhooks()
    assert signed_topics() == []
    fake.subscribe_webhooks(receiver.url, secret=SECRET, topics=[topic])
    assert driver.trigger(fake) == topic
    fake.flush_webhooks()
    assert signed_topics() == [topic]
    headers, body = next((h, b) for h, b in receiver.requests if driver.signed(h, b, SECRET))
    assert body == fake.webhook_attempts[-1].body
    fake.subscribe_webhooks(None)
    driver.trigger(fake)
    fake.flush_webhooks()
    assert signed_topics() == [topic]


# --- command line -------------------------------------------------------------------------------

def test_standalone_command(driver: Driver) -> None:
    command = [sys.executable, "-m", driver.module, "--port", "0"]
    out = subprocess.PIPE
    with subprocess.Popen(command, text=True, stdout=out if driver.stream == "stdout" else subprocess.DEVNULL,
                          stderr=out if driver.stream == "stderr" else subprocess.DEVNULL) as process:
        try:
            stream = process.stdout if driver.stream == "stdout" else process.stderr
            assert stream is not None
            banner = stream.readline()
            url = next(word for word in banner.split() if word.startswith("http://127.0.0.1:"))
            # the command's fake has the defaults (key, token) of one made here
            assert driver.probe(driver.make(), url.removesuffix("/wp-json")).status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
