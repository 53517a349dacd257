"""ShopifyClient and ShopifyAdapter.from_config against the fake over real HTTP:
auth, token refresh, throttling, error translation, configuration."""

from __future__ import annotations

import collections.abc as cabc
import socket
import typing as t

import pytest

from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import AdapterUnavailableError
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp_adapters.shopify import ShopifyAdapter
from flask_acp_adapters.shopify import ShopifyClient
from flask_acp_adapters.shopify import ShopifyGraphQLError
from flask_acp_adapters.shopify import ShopifyNoAnswerError
from flask_acp_adapters.shopify import ShopifyThrottledError
from flask_acp_adapters.shopify.client import validate_shop_url
from tests.test_shopify import STORE

SHOP = "query S { shop { currencyCode } }"


@pytest.fixture(scope="module")
def server() -> cabc.Iterator[FakeShopify]:
    with FakeShopify(STORE) as fake:
        yield fake


@pytest.fixture
def shop(server: FakeShopify) -> FakeShopify:
    server.reset(STORE)
    return server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clients() -> cabc.Iterator[list[ShopifyClient]]:
    made: list[ShopifyClient] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def connect(shop: FakeShopify, clock: Clock,
            clients: list[ShopifyClient]) -> cabc.Callable[..., ShopifyClient]:
    def factory(**kwargs: t.Any) -> ShopifyClient:
        options: dict[str, t.Any] = {"access_token": shop.access_token, "sleep": clock.sleep, "clock": clock,
                                     "timeout": 2.0}
        options.update(kwargs)
        client = ShopifyClient(options.pop("shop_url", shop.url), **options)
        clients.append(client)
        return client
    return factory


def test_execute_returns_data_and_names_the_operation(shop: FakeShopify,
                                                      connect: cabc.Callable[..., ShopifyClient]) -> None:
    client = connect()
    assert client.graphql_url == f"{shop.url}/admin/api/2026-10/graphql.json"
    assert client.execute(SHOP, operation_name="S") == {"shop": {"currencyCode": "USD"}}
    assert shop.calls["S"] == 1


def test_wrong_static_token_is_rejected(shop: FakeShopify,
                                        connect: cabc.Callable[..., ShopifyClient]) -> None:
    with pytest.raises(AdapterUnavailableError, match="SHOPIFY_ACCESS_TOKEN"):
        connect(access_token="shpat_wrong").execute(SHOP, operation_name="S")
    assert shop.calls["S"] == 1  # a static token is not retried


def test_client_credentials_token_is_reused_then_refreshed_before_expiry(
        shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient], clock: Clock) -> None:
    client = connect(access_token=None, client_id="acp-client", client_secret="acp-client-secret")
    for _ in range(3):
        client.execute(SHOP, operation_name="S")
    assert shop.calls["access_token"] == 1
    clock.now += 86399 - 301  # just before "expires_in - 5 minutes"
    client.execute(SHOP, operation_name="S")
    assert shop.calls["access_token"] == 1
    clock.now += 2
    client.execute(SHOP, operation_name="S")
    assert shop.calls["access_token"] == 2


def test_client_credentials_token_expired_early_is_refreshed_once_on_401(
        shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient]) -> None:
    client = connect(access_token=None, client_id="acp-client", client_secret="acp-client-secret")
    client.execute(SHOP, operation_name="S")
    shop.advance_clock(90000)  # Shopify's clock says the token has expired
    client.execute(SHOP, operation_name="S")
    assert shop.calls["access_token"] == 2
    assert shop.calls["S"] == 3


def test_wrong_client_secret_is_rejected(connect: cabc.Callable[..., ShopifyClient]) -> None:
    """Retryable: once the merchant fixes the credentials, a paid order gets placed."""
    client = connect(access_token=None, client_id="acp-client", client_secret="nope")
    with pytest.raises(AdapterUnavailableError):
        client.execute(SHOP, operation_name="S")


def test_throttled_is_retried_after_the_cost_implied_delay(
        shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient], clock: Clock) -> None:
    shop.add_fault("throttled", operation="S", currently_available=50, restore_rate=50, requested_cost=60)
    assert connect().execute(SHOP, operation_name="S") == {"shop": {"currencyCode": "USD"}}
    assert clock.sleeps == [pytest.approx(0.2)]
    assert shop.calls["S"] == 2


def test_throttle_waits_are_bounded(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient],
                                    clock: Clock) -> None:
    shop.add_fault("throttled", operation="S", times=5, currently_available=0, restore_rate=10,
                   requested_cost=10)
    with pytest.raises(ShopifyThrottledError) as info:
        connect(max_throttle_wait=2.5).execute(SHOP, operation_name="S")
    assert clock.sleeps == [1.0, 1.0]
    assert info.value.retry_after == 1
    assert isinstance(info.value, AdapterUnavailableError)


def test_a_long_throttle_is_not_waited(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient],
                                       clock: Clock) -> None:
    shop.add_fault("throttled", operation="S", currently_available=0, restore_rate=2.5, requested_cost=101)
    with pytest.raises(ShopifyThrottledError) as info:
        connect().execute(SHOP, operation_name="S")
    assert clock.sleeps == []
    assert info.value.retry_after == 41


def test_429_waits_for_retry_after(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient],
                                   clock: Clock) -> None:
    shop.add_fault("status", operation="S", status=429, retry_after="2.0")
    connect().execute(SHOP, operation_name="S")
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize(("status", "error"), [
    (500, AdapterUnavailableError), (503, AdapterUnavailableError), (400, AdapterRejectedError),
    (402, AdapterUnavailableError), (403, AdapterUnavailableError), (404, AdapterRejectedError),
    (423, AdapterUnavailableError),
])
def test_http_errors_are_translated(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient],
                                    status: int, error: type[Exception]) -> None:
    shop.add_fault("status", operation="S", status=status, retry_after="7")
    with pytest.raises(error) as info:
        connect().execute(SHOP, operation_name="S")
    if isinstance(info.value, AdapterUnavailableError):
        assert info.value.retry_after == 7
    assert shop.calls["S"] == 1  # urllib3 retries only connection failures


def test_graphql_errors(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient]) -> None:
    client = connect()
    with pytest.raises(ShopifyGraphQLError) as info:
        client.execute("query Bad { shop { nope } }", operation_name="Bad")
    assert "nope" in str(info.value)
    assert info.value.errors
    shop.add_fault("status", operation="S", status=200, body={
        "errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})
    with pytest.raises(AdapterUnavailableError):
        client.execute(SHOP, operation_name="S")


def test_connection_refused_is_unavailable(connect: cabc.Callable[..., ShopifyClient]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AdapterUnavailableError, match="cannot reach Shopify"):
        connect(shop_url=f"http://127.0.0.1:{port}").execute(SHOP, operation_name="S")


def test_a_dropped_mutation_is_not_resent(shop: FakeShopify,
                                          connect: cabc.Callable[..., ShopifyClient]) -> None:
    shop.add_fault("drop", operation="T")
    mutation = 'mutation T { tagsAdd(id: "gid://shopify/Order/1", tags: ["x"]) { node { id } } }'
    with pytest.raises(AdapterUnavailableError):
        connect().execute(mutation, operation_name="T")
    assert shop.calls["T"] == 1
    assert shop.executed["T"] == 1


def test_a_dropped_query_is_sent_once_more(shop: FakeShopify,
                                           connect: cabc.Callable[..., ShopifyClient]) -> None:
    shop.add_fault("drop", operation="S", times=2)
    client = connect()
    with pytest.raises(AdapterUnavailableError):
        client.execute(SHOP, operation_name="S")
    assert shop.calls["S"] == 2
    shop.add_fault("drop", operation="S")
    assert client.execute(SHOP, operation_name="S") == {"shop": {"currencyCode": "USD"}}


def test_timeout_is_unavailable(shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient]) -> None:
    shop.add_fault("timeout", operation="S", seconds=0.5)
    with pytest.raises(AdapterUnavailableError, match="within 0.2 s"):
        connect(timeout=0.2).execute(SHOP, operation_name="S")
    assert shop.executed["S"] == 0


MUTATION = 'mutation T { tagsAdd(id: "gid://shopify/Order/1", tags: ["x"]) { node { id } } }'


@pytest.mark.parametrize(("fault", "unknown", "no_answer"), [
    ({"kind": "drop"}, True, True),  # executed, the answer lost
    ({"kind": "timeout", "seconds": 0.5}, True, True),  # no answer in time: may still run
    ({"kind": "status", "status": 500}, True, False),  # answered 5xx: may have run
    ({"kind": "500_after"}, True, False),
    ({"kind": "status", "status": 200, "body": {"errors": [
        {"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}}, True, False),
    ({"kind": "status", "status": 423}, False, False),  # refused before running
    ({"kind": "status", "status": 429, "retry_after": "30"}, False, False),  # throttled: not run
], ids=["drop", "timeout", "500", "500-after", "internal-error", "423", "429"])
def test_outcome_unknown_marks_mutations_that_may_have_run(
        shop: FakeShopify, connect: cabc.Callable[..., ShopifyClient], fault: dict[str, t.Any],
        unknown: bool, no_answer: bool) -> None:
    client = connect(timeout=0.2)
    options = dict(fault)
    shop.add_fault(options.pop("kind"), operation="T", **options)
    with pytest.raises(AdapterUnavailableError) as info:
        client.execute(MUTATION, operation_name="T")
    assert (info.value.outcome_unknown, isinstance(info.value, ShopifyNoAnswerError)) == (unknown, no_answer)
    # a query changes nothing: its failures never have an unknown outcome
    options = dict(fault)
    shop.add_fault(options.pop("kind"), operation="S", times=2, **options)
    with pytest.raises(AdapterUnavailableError) as info:
        client.execute(SHOP, operation_name="S")
    assert info.value.outcome_unknown is False


def test_refused_connection_is_not_an_unknown_outcome(connect: cabc.Callable[..., ShopifyClient]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AdapterUnavailableError, match="cannot reach Shopify") as info:
        connect(shop_url=f"http://127.0.0.1:{port}").execute(MUTATION, operation_name="T")
    assert info.value.outcome_unknown is False  # nothing was sent


@pytest.mark.parametrize("url", ["https://shop.myshopify.com", "https://shop.myshopify.com/",
                                 "http://127.0.0.1:8765", "http://localhost:1"])
def test_valid_shop_urls(url: str) -> None:
    assert validate_shop_url(url) == url.rstrip("/")


@pytest.mark.parametrize(("url", "message"), [
    ("shop.myshopify.com", "absolute"), ("ftp://shop.myshopify.com", "absolute"),
    ("http://shop.myshopify.com", "https"), ("https://shop.myshopify.com/admin", "no path"),
    ("https://shop.myshopify.com?x=1", "no path"),
])
def test_invalid_shop_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_shop_url(url)


def test_client_needs_one_kind_of_credentials() -> None:
    with pytest.raises(ValueError, match="either"):
        ShopifyClient("https://s.myshopify.com")
    with pytest.raises(ValueError, match="either"):
        ShopifyClient("https://s.myshopify.com", access_token="a", client_id="b", client_secret="c")


# --- from_config ------------------------------------------------------------------------------

BASE = {"SHOPIFY_SHOP_URL": "https://s.myshopify.com", "SHOPIFY_ACCESS_TOKEN": "shpat_x"}


def test_from_config_defaults() -> None:
    adapter = ShopifyAdapter.from_config(BASE)
    try:
        assert adapter.client.api_version == "2026-10"
        assert adapter.client.timeout == 10.0
        assert adapter.client.max_throttle_wait == 5.0
        assert adapter.ready_timeout == 5.0
        assert adapter.accept_automatic_discounts is False
    finally:
        adapter.close()
    adapter = ShopifyAdapter.from_config({
        "SHOPIFY_SHOP_URL": "https://s.myshopify.com", "SHOPIFY_CLIENT_ID": "id",
        "SHOPIFY_CLIENT_SECRET": "sec", "SHOPIFY_API_VERSION": "2026-07", "SHOPIFY_TIMEOUT": "2.5",
        "SHOPIFY_ACCEPT_AUTOMATIC_DISCOUNTS": True})
    try:
        assert (adapter.client.api_version, adapter.client.timeout) == ("2026-07", 2.5)
        assert adapter.accept_automatic_discounts is True
    finally:
        adapter.close()


@pytest.mark.parametrize(("changes", "key"), [
    ({"SHOPIFY_SHOP_URL": None}, "SHOPIFY_SHOP_URL"),
    ({"SHOPIFY_SHOP_URL": "http://s.myshopify.com"}, "SHOPIFY_SHOP_URL"),
    ({"SHOPIFY_ACCESS_TOKEN": None}, "SHOPIFY_ACCESS_TOKEN"),
    ({"SHOPIFY_ACCESS_TOKEN": ""}, "SHOPIFY_ACCESS_TOKEN"),
    ({"SHOPIFY_ACCESS_TOKEN": None, "SHOPIFY_CLIENT_ID": "id"}, "SHOPIFY_CLIENT_SECRET"),
    ({"SHOPIFY_ACCESS_TOKEN": None, "SHOPIFY_CLIENT_SECRET": "s"}, "SHOPIFY_CLIENT_ID"),
    ({"SHOPIFY_CLIENT_ID": "id", "SHOPIFY_CLIENT_SECRET": "s"}, "SHOPIFY_ACCESS_TOKEN"),
    ({"SHOPIFY_API_VERSION": "2026-11"}, "SHOPIFY_API_VERSION"),
    ({"SHOPIFY_API_VERSION": "latest"}, "SHOPIFY_API_VERSION"),
    ({"SHOPIFY_TIMEOUT": 0}, "SHOPIFY_TIMEOUT"),
    ({"SHOPIFY_TIMEOUT": "soon"}, "SHOPIFY_TIMEOUT"),
    ({"SHOPIFY_TIMEOUT": True}, "SHOPIFY_TIMEOUT"),
    ({"SHOPIFY_MAX_THROTTLE_WAIT": -1}, "SHOPIFY_MAX_THROTTLE_WAIT"),
    ({"SHOPIFY_READY_TIMEOUT": float("nan")}, "SHOPIFY_READY_TIMEOUT"),
    ({"SHOPIFY_ACCEPT_AUTOMATIC_DISCOUNTS": "yes"}, "SHOPIFY_ACCEPT_AUTOMATIC_DISCOUNTS"),
])
def test_from_config_names_the_bad_key(changes: dict[str, t.Any], key: str) -> None:
    config = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    with pytest.raises(ValueError, match=key):
        ShopifyAdapter.from_config(config)
