"""``flask acp doctor`` against real servers: a private Redis configured well
or badly, the fake Stripe (right key, wrong key, another account), a fake
Shopify (right and wrong token), agents' webhook hosts that answer or do
not resolve. The exit code is non-zero on any error, and every problem line
says what to fix."""

from __future__ import annotations

import pathlib
import socket
import typing as t

import pytest
from click.testing import Result
from flask import Flask

from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from tests.conftest import AGENT_KEY
from tests.conftest import FROM_CONFIG
from tests.conftest import build_app
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix

DATA = pathlib.Path(__file__).parent / "data"


def doctor(app: Flask) -> Result:
    return app.test_cli_runner().invoke(args=["acp", "doctor"])


def lines(result: Result, level: str) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(level)]


@pytest.fixture
def stripe_fake() -> t.Iterator[FakeStripe]:
    with FakeStripe(account_id="acct_doctor") as fake:
        yield fake


@pytest.fixture
def listener() -> t.Iterator[str]:
    """A loopback TCP port that accepts connections (an agent's webhook host)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/order_events"


def make(tmp_path: pathlib.Path, stripe_fake: FakeStripe, store_url: str, **config: t.Any) -> Flask:
    config.setdefault("ACP_AGENTS", {"agent-one": {"api_keys": [AGENT_KEY]}})
    config.setdefault("ACP_STRIPE_SECRET_KEY", stripe_fake.api_key)
    config.setdefault("ACP_STRIPE_MERCHANT_ID", "acct_doctor")
    return build_app(tmp_path, payment_processor=FROM_CONFIG, ACP_STORE_URL=store_url,
                     ACP_STRIPE_API_BASE=stripe_fake.url, ACP_WEBHOOK_DELIVERY_THREAD=False, **config)


def test_a_healthy_redis_setup_passes(tmp_path: pathlib.Path, stripe_fake: FakeStripe, listener: str) -> None:
    with RedisServer(persistence="aof", args=["--maxmemory-policy", "noeviction"]) as server:
        app = make(tmp_path, stripe_fake, f"{server.url}?key_prefix={unique_prefix()}",
                   ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY], "webhook_url": listener,
                                             "webhook_secrets": ["s" * 20]}})
        result = doctor(app)
        app.extensions["acp"].webhooks.close()
    assert result.exit_code == 0, result.output
    assert lines(result, "ERROR") == []
    assert "persistence: AOF on (appendfsync always)" in result.output
    assert "maxmemory-policy noeviction" in result.output
    assert "authenticated as acct_doctor" in result.output
    assert "clock: this machine is" in result.output
    assert "accepts connections" in result.output
    assert "no RQ worker listens on acp-webhooks" in result.output  # a warning: run `flask acp worker`
    assert "catalog: " in result.output


def test_an_unsafe_redis_and_a_wrong_stripe_account_are_errors(tmp_path: pathlib.Path,
                                                              stripe_fake: FakeStripe) -> None:
    with RedisServer(args=["--maxmemory-policy", "allkeys-lru"]) as server:
        app = make(tmp_path, stripe_fake, f"{server.url}?key_prefix={unique_prefix()}", ACP_REDIS_URL="",
                   ACP_STRIPE_MERCHANT_ID="acct_someone_else",
                   ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY],
                                             "webhook_url": "https://agent.invalid/order_events",
                                             "webhook_secrets": ["s" * 20]}})
        result = doctor(app)
    assert result.exit_code == 1
    errors = "\n".join(lines(result, "ERROR"))
    assert "persistence is OFF" in errors
    assert "set appendonly yes" in errors
    assert "maxmemory-policy is allkeys-lru" in errors
    assert "an evicted idempotency record could mean a second charge" in errors
    assert "set maxmemory-policy noeviction" in errors
    assert "the key belongs to acct_doctor, but ACP_STRIPE_MERCHANT_ID is acct_someone_else" in errors
    assert "agent.invalid of its webhook_url does not resolve" in errors
    assert "4 error(s)" in result.output.splitlines()[-1]


def test_an_unreachable_store_and_a_refused_stripe_key_are_errors(tmp_path: pathlib.Path,
                                                                  stripe_fake: FakeStripe) -> None:
    with RedisServer() as server:
        url = f"{server.url}?connect_timeout=0.5&key_prefix={unique_prefix()}"
    app = make(tmp_path, stripe_fake, url, ACP_REDIS_URL="", ACP_STRIPE_SECRET_KEY="sk_test_not_the_key_0000")
    result = doctor(app)
    assert result.exit_code == 1
    errors = "\n".join(lines(result, "ERROR"))
    assert f"Redis {url} does not answer" in errors
    assert "check the host, port, password and TLS of the URL" in errors
    assert "Stripe refuses ACP_STRIPE_SECRET_KEY (401)" in errors


def test_sqlite_store_passes_and_says_it_serves_one_machine(tmp_path: pathlib.Path,
                                                            stripe_fake: FakeStripe) -> None:
    app = make(tmp_path, stripe_fake, f"sqlite://{tmp_path / 'acp.sqlite3'}")
    result = doctor(app)
    assert result.exit_code == 0, result.output
    assert "is writable (journal wal)" in result.output
    assert "use ACP_STORE_URL=redis://" in result.output


def test_platform_credentials_are_checked_with_one_call(tmp_path: pathlib.Path,
                                                        stripe_fake: FakeStripe) -> None:
    with FakeShopify(DATA / "shopify_store.json") as shop:
        good = make(tmp_path, stripe_fake, f"sqlite://{tmp_path / 'acp.sqlite3'}", ACP_ADAPTER="shopify",
                    SHOPIFY_SHOP_URL=shop.url, SHOPIFY_ACCESS_TOKEN=shop.access_token)
        result = doctor(good)
        assert result.exit_code == 0, result.output
        assert "shopify: Admin API" in result.output
        bad = make(tmp_path / "bad", stripe_fake, f"sqlite://{tmp_path / 'bad.sqlite3'}",
                   ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL=shop.url, SHOPIFY_ACCESS_TOKEN="shpat_wrong")
        result = doctor(bad)
    assert result.exit_code == 1
    assert any("shopify:" in line and "check the platform's URL and credentials" in line
               for line in lines(result, "ERROR")), result.output


def test_woocommerce_credentials_are_checked_with_one_call(tmp_path: pathlib.Path,
                                                           stripe_fake: FakeStripe) -> None:
    with FakeWooCommerce() as woo:
        good = make(tmp_path, stripe_fake, f"sqlite://{tmp_path / 'acp.sqlite3'}", **woo.config())
        result = doctor(good)
        assert result.exit_code == 0, result.output
        assert "woocommerce: REST API v3 answered" in result.output
        bad = make(tmp_path / "bad", stripe_fake, f"sqlite://{tmp_path / 'bad.sqlite3'}",
                   **woo.config(WOOCOMMERCE_CONSUMER_SECRET="cs_wrong"))
        result = doctor(bad)
    assert result.exit_code == 1
    errors = lines(result, "ERROR")
    assert any(line.startswith("ERROR  platform  woocommerce:") for line in errors), result.output
