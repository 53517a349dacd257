"""The product feed (issue 15): ``flask acp feed export`` on the three adapters,
``flask acp feed push`` to a fake agent Feed API that validates every request
against the official ``openapi.feed.yaml`` (full, incremental, a failure midway
and its resume), and platform product webhooks becoming a ``PATCH`` of just that
product through the outbox. Real sockets everywhere: the fakes of Shopify,
WooCommerce and the Feed API are HTTP servers on loopback.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import copy
import io
import json
import pathlib
import sys
import typing as t

import jsonschema
import pytest
from flask import Flask

from flask_acp.catalog import CatalogAdapter
from flask_acp.feed import cli as feed_cli
from flask_acp.feed.client import FeedClient
from flask_acp.products import ProductRecord
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp.testing.fake_woocommerce import DEMO_SEED
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from flask_acp.testing.fakes.feed import FakeFeedService
from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix
from tests.spec import VERSION
from tests.spec import require_spec
from tests.test_shopify import STORE

FEED_TOKEN = "feed-token-0123456789"


@pytest.fixture(scope="module")
def product_validator() -> jsonschema.Draft202012Validator:
    """``$defs/Product`` of the official ``schema.feed.json`` (read in place)."""
    schema = json.loads((require_spec() / VERSION / "json-schema" / "schema.feed.json").read_text())
    return jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/Product"},
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
def feed_service() -> cabc.Iterator[FakeFeedService]:
    openapi = require_spec() / VERSION / "openapi" / "openapi.feed.yaml"
    with FakeFeedService(openapi, token=FEED_TOKEN) as fake:
        yield fake
        assert fake.rejected == []  # every request flask-acp sent was valid against openapi.feed.yaml
        assert fake.server_errors == []


def agents(feed_url: str | None, **feed: t.Any) -> dict[str, t.Any]:
    one: dict[str, t.Any] = {"api_keys": [AGENT_KEY]}
    if feed_url is not None:
        one.update(feed_url=feed_url, feed_token=FEED_TOKEN, **feed)
    return {"agent-one": one, "agent-two": {"api_keys": [OTHER_KEY]}}


def export_lines(app: Flask, tmp_path: pathlib.Path) -> list[dict[str, t.Any]]:
    out = tmp_path / "products.jsonl"
    result = app.test_cli_runner().invoke(args=["acp", "feed", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert f"{len(lines)} products exported to {out}" in result.output
    return [json.loads(line) for line in lines]


def assert_valid(products: list[dict[str, t.Any]], validator: jsonschema.Draft202012Validator) -> None:
    assert products
    for product in products:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(product)]
        assert errors == [], (product["id"], errors)


def push(app: Flask, *args: str) -> t.Any:
    return app.test_cli_runner().invoke(args=["acp", "feed", "push", *args])


def variant_ids(products: cabc.Iterable[dict[str, t.Any]]) -> list[str]:
    return [v["id"] for p in products for v in p["variants"]]


# --- export --------------------------------------------------------------------------------


def test_catalog_export_is_valid_and_its_items_can_be_bought(
        tmp_path: pathlib.Path, product_validator: jsonschema.Draft202012Validator) -> None:
    app = build_app(tmp_path)
    products = export_lines(app, tmp_path)
    assert_valid(products, product_validator)
    adapter = app.extensions["acp"].adapter
    assert variant_ids(products) == list(adapter.items)  # the checkout's item ids, in feed order
    mug = next(v for p in products for v in p["variants"] if v["id"] == "item_456")
    assert mug["price"] == {"amount": 1250, "currency": "USD"}
    created = Agent(app.test_client()).create([{"id": "item_456", "quantity": 1}])
    assert created.status_code == 201
    assert created.json["line_items"][0]["item"]["id"] == "item_456"


def test_catalog_export_follows_the_stock(tmp_path: pathlib.Path,
                                          product_validator: jsonschema.Draft202012Validator) -> None:
    store = json.loads((pathlib.Path(__file__).parent / "data" / "store.json").read_text())
    store["stock"] = {**store.get("stock", {}), "item_456": 0}
    path = tmp_path / "store.json"
    path.write_text(json.dumps(store))
    app = build_app(tmp_path, ACP_STORE_FILE=str(path))
    products = export_lines(app, tmp_path)
    assert_valid(products, product_validator)
    mug = next(v for p in products for v in p["variants"] if v["id"] == "item_456")
    assert mug["availability"] == {"available": False, "status": "out_of_stock"}


def test_export_to_stdout_has_no_progress_bar_when_not_a_terminal(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["acp", "feed", "export"])
    assert result.exit_code == 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(app.extensions["acp"].adapter.products)
    assert "products" not in result.stdout.splitlines()[0]  # no bar, no summary on stdout


SHOPIFY_FEED_STORE: dict[str, t.Any] = copy.deepcopy(STORE)
SHOPIFY_FEED_STORE["variants"] = [
    *SHOPIFY_FEED_STORE["variants"],
    {"id": 1101, "product_id": 601, "product_title": "Hoodie", "title": "Small", "price": "45.00",
     "compare_at_price": "60.00", "inventory": 12, "sku": "HOOD-S", "barcode": "00012345600012",
     "options": {"Size": "S"}, "image": "https://cdn.example/hoodie-s.jpg",
     "product_description": "A heavy hoodie."},
    {"id": 1102, "product_id": 601, "product_title": "Hoodie", "title": "Large", "price": "45.00",
     "inventory": 0, "sku": "HOOD-L", "options": {"Size": "L"}},
]


@pytest.fixture
def shopify() -> cabc.Iterator[FakeShopify]:
    with FakeShopify(SHOPIFY_FEED_STORE) as fake:
        yield fake


def shopify_app(tmp_path: pathlib.Path, shop: FakeShopify, **config: t.Any) -> Flask:
    return build_app(tmp_path, ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL=shop.url,
                     SHOPIFY_ACCESS_TOKEN=shop.access_token, SHOPIFY_TIMEOUT=2, **config)


def test_shopify_export_is_valid_admin_graphql_and_schema_valid(
        tmp_path: pathlib.Path, shopify: FakeShopify,
        product_validator: jsonschema.Draft202012Validator) -> None:
    app = shopify_app(tmp_path, shopify)
    products = export_lines(app, tmp_path)
    assert_valid(products, product_validator)
    assert shopify.calls["AcpProducts"] == 2  # 8 products, 6 per page
    listed = {str(v["id"]) for v in SHOPIFY_FEED_STORE["variants"]
              if v.get("status", "ACTIVE") == "ACTIVE" and v.get("published", True)}
    assert set(variant_ids(products)) == listed  # numeric variant ids: what the checkout accepts
    hoodie = next(p for p in products if p["id"] == "601")
    small, large = hoodie["variants"]
    assert hoodie["description"] == {"plain": "A heavy hoodie."}
    assert small["price"] == {"amount": 4500, "currency": "USD"}
    assert small["list_price"] == {"amount": 6000, "currency": "USD"}
    assert small["barcodes"] == [{"type": "GTIN", "value": "00012345600012"}]
    assert small["variant_options"] == [{"name": "Size", "value": "S"}]
    assert small["media"][0]["url"] == "https://cdn.example/hoodie-s.jpg"
    assert small["availability"] == {"available": True, "status": "in_stock"}
    assert large["availability"] == {"available": False, "status": "out_of_stock"}
    created = Agent(app.test_client()).create([{"id": small["id"], "quantity": 1}])
    assert created.status_code == 201, created.json
    app.extensions["acp"].adapter.close()


WOO_FEED_SEED: dict[str, t.Any] = json.loads(DEMO_SEED.read_text())
WOO_FEED_SEED["products"] += [
    {"id": 20, "name": "T-Shirt", "type": "variable", "short_description": "Organic cotton.",
     "images": ["https://shop.example/tshirt.jpg"]},
    {"id": 21, "name": "T-Shirt - M", "type": "variation", "parent_id": 20, "sku": "TS-M",
     "regular_price": "20.00", "sale_price": "15.00", "manage_stock": True, "stock_quantity": 7,
     "global_unique_id": "4006381333931", "attributes": {"Size": "M"}},
    {"id": 22, "name": "T-Shirt - L", "type": "variation", "parent_id": 20, "sku": "TS-L",
     "regular_price": "20.00", "manage_stock": True, "stock_quantity": 0, "stock_status": "outofstock",
     "attributes": {"Size": "L"}},
    {"id": 23, "name": "Draft thing", "regular_price": "5.00", "status": "draft"},
]


@pytest.fixture
def woo() -> cabc.Iterator[FakeWooCommerce]:
    with FakeWooCommerce(WOO_FEED_SEED) as fake:
        yield fake
        assert fake.server_errors == []


def test_woocommerce_export_reads_products_and_variations(
        tmp_path: pathlib.Path, woo: FakeWooCommerce,
        product_validator: jsonschema.Draft202012Validator) -> None:
    app = build_app(tmp_path, **woo.config())
    products = export_lines(app, tmp_path)
    assert_valid(products, product_validator)
    assert [p["id"] for p in products] == ["10", "11", "12", "13", "14", "15", "20"]  # no draft
    assert woo.counts["GET /wc/v3/products"] == 1
    assert woo.counts["GET /wc/v3/products/{id}/variations"] == 1
    shirt = products[-1]
    medium, large = shirt["variants"]
    assert (medium["id"], large["id"]) == ("21", "22")  # variation ids: the checkout's item ids
    assert medium["price"] == {"amount": 1500, "currency": "USD"}
    assert medium["list_price"] == {"amount": 2000, "currency": "USD"}
    assert medium["barcodes"] == [{"type": "GTIN", "value": "4006381333931"}]
    assert medium["variant_options"] == [{"name": "Size", "value": "M"}]
    assert large["availability"] == {"available": False, "status": "out_of_stock"}
    assert shirt["description"] == {"plain": "Organic cotton."}
    album = next(p for p in products if p["id"] == "12")["variants"][0]
    assert (album["price"]["amount"], album["list_price"]["amount"]) == (999, 1500)
    created = Agent(app.test_client()).create([{"id": "21", "quantity": 1}])
    assert created.status_code == 201, created.json


def test_woocommerce_export_pages_through_100_products(tmp_path: pathlib.Path) -> None:
    seed = copy.deepcopy(WOO_FEED_SEED)
    seed["products"] += [{"id": 1000 + i, "name": f"Pin {i}", "regular_price": "1.00"} for i in range(150)]
    with FakeWooCommerce(seed) as fake:
        app = build_app(tmp_path, **fake.config())
        products = export_lines(app, tmp_path)
        assert fake.counts["GET /wc/v3/products"] == 2
    assert len(products) == 7 + 150


# --- push ----------------------------------------------------------------------------------


def test_push_creates_a_feed_then_sends_only_what_changed(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url, feed_target_country="US"),
                    ACP_FEED_BATCH_SIZE=3)
    first = push(app)
    assert first.exit_code == 0, first.output
    (feed_id,) = feed_service.feeds
    assert feed_service.feeds[feed_id]["metadata"]["target_country"] == "US"
    catalog = [p.id for p in app.extensions["acp"].adapter.products]
    assert list(feed_service.products(feed_id)) == catalog
    assert feed_service.patches(feed_id) == [catalog[:3], catalog[3:]]
    assert f"feed {feed_id} (created): {len(catalog)} products sent in 2 batches" in first.output
    state = json.loads((tmp_path / "instance" / "acp-feed-state.json").read_text())
    assert state["agents"]["agent-one"]["feed_id"] == feed_id
    assert state["agents"]["agent-one"]["run"] is None

    again = push(app)
    assert again.exit_code == 0, again.output
    assert f"0 products sent in 0 batches, {len(catalog)} unchanged (incremental)" in again.output
    assert len(feed_service.patches()) == 2
    assert len(feed_service.feeds) == 1

    # a sale changes the stock of one variant: an incremental push sends that product only
    store = json.loads((pathlib.Path(__file__).parent / "data" / "store.json").read_text())
    store["stock"] = {**store.get("stock", {}), "item_456": 0}
    (tmp_path / "store.json").write_text(json.dumps(store))
    changed = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url),
                        ACP_STORE_FILE=str(tmp_path / "store.json"))
    assert push(changed).exit_code == 0
    assert feed_service.patches()[-1] == ["prod_mug"]
    mug = next(v for v in feed_service.products(feed_id)["prod_mug"]["variants"] if v["id"] == "item_456")
    assert mug["availability"]["status"] == "out_of_stock"

    full = push(changed, "--full")
    assert full.exit_code == 0
    assert feed_service.patches()[-1] == catalog  # one batch of ACP_FEED_BATCH_SIZE (100)


def test_push_resumes_after_a_failure_midway_without_sending_twice(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_FEED_BATCH_SIZE=1)
    catalog = [p.id for p in app.extensions["acp"].adapter.products]
    # the second PATCH fails every time (the client retries 3 times, then gives up)
    feed_service.fail_next("500", match="PATCH /feeds/{id}/products", after=1, count=4)
    failed = push(app, "--full")
    assert failed.exit_code == 1
    assert "stopped after 1 products sent (1 batches accepted)" in failed.output
    assert "run the push again to resume" in failed.output
    (feed_id,) = feed_service.feeds
    assert feed_service.patches(feed_id) == [[catalog[0]]]

    resumed = push(app)  # incremental asked, but the unfinished full run is resumed
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(catalog) - 1} products sent in {len(catalog) - 1} batches, 1 already sent (full, resumed)" \
        in resumed.output
    sent = [i for ids in feed_service.patches(feed_id) for i in ids]
    assert sent == catalog  # each product once, in order: nothing sent twice
    assert list(feed_service.products(feed_id)) == catalog
    assert len(feed_service.feeds) == 1  # the same feed


def test_a_resumed_push_sends_a_product_that_changed_since_its_batch(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    """A product an accepted batch carried, changed before the resume (a sale):
    the resume sends its new state, not nothing."""
    store = json.loads((pathlib.Path(__file__).parent / "data" / "store.json").read_text())
    (tmp_path / "store.json").write_text(json.dumps(store))
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_FEED_BATCH_SIZE=1,
                    ACP_STORE_FILE=str(tmp_path / "store.json"))
    catalog = [p.id for p in app.extensions["acp"].adapter.products]
    first = next(p for p in app.extensions["acp"].adapter.products if p.id == catalog[0])
    feed_service.fail_next("500", match="PATCH /feeds/{id}/products", after=1, count=4)
    assert push(app, "--full").exit_code == 1
    (feed_id,) = feed_service.feeds
    assert feed_service.patches(feed_id) == [[catalog[0]]]
    variant = first.variants[0].id
    store["stock"] = {**store.get("stock", {}), variant: 0}
    (tmp_path / "store.json").write_text(json.dumps(store))
    changed = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_FEED_BATCH_SIZE=1,
                        ACP_STORE_FILE=str(tmp_path / "store.json"))
    resumed = push(changed)
    assert resumed.exit_code == 0, resumed.output
    sent = feed_service.products(feed_id)[catalog[0]]
    status = next(v for v in sent["variants"] if v["id"] == variant)["availability"]["status"]
    assert status == "out_of_stock"


def test_push_to_a_feed_the_agent_forgot_starts_a_new_one(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url))
    assert push(app).exit_code == 0
    feed_service.reset()  # the agent lost its feeds
    again = push(app)
    assert again.exit_code == 0, again.output
    (feed_id,) = feed_service.feeds
    assert "(created)" in again.output
    assert len(feed_service.products(feed_id)) == len(app.extensions["acp"].adapter.products)


def test_push_needs_an_agent_with_a_feed_url(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    result = push(app)
    assert result.exit_code == 1
    assert "no agent has a feed_url in ACP_AGENTS" in result.output


def test_push_with_a_damaged_state_file_says_so_without_a_traceback(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url))
    (tmp_path / "instance").mkdir(exist_ok=True)
    (tmp_path / "instance" / "acp-feed-state.json").write_text('{"agents":')
    result = push(app)
    assert result.exit_code == 1
    assert "not a feed state file" in result.output
    assert not isinstance(result.exception, ValueError)  # a clean error, not a crash
    assert feed_service.requests == []


def test_push_refused_without_the_feed_token(tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    one = agents(feed_service.url)
    one["agent-one"]["feed_token"] = "wrong-token-0123456789"
    app = build_app(tmp_path, ACP_AGENTS=one)
    result = push(app)
    assert result.exit_code == 1
    assert "HTTP 401" in result.output
    assert feed_service.feeds == {}


# --- incremental sync from platform webhooks -------------------------------------------------


def test_a_shopify_product_webhook_patches_just_that_product(
        tmp_path: pathlib.Path, shopify: FakeShopify, feed_service: FakeFeedService) -> None:
    app = shopify_app(tmp_path, shopify, ACP_AGENTS=agents(feed_service.url),
                      SHOPIFY_WEBHOOK_SECRET=shopify.webhook_secret, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    try:
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        before = len(feed_service.patches())
        with serve_app(app) as base:
            shopify.subscribe_webhooks(f"{base}/webhooks/shopify",
                                       topics=["products/update", "inventory_levels/update"])
            shopify.update_product(601, title="Hoodie Deluxe")
            shopify.set_inventory(1001, 0, notify=True)
            deliveries = shopify.flush_webhooks()
            assert [d.status for d in deliveries] == [200, 200]
            shopify.redeliver(deliveries[0], new_webhook_id=False)  # the same delivery twice
            shopify.flush_webhooks()
        entries = state.storage.outbox.entries(statuses=["pending"])
        assert [(e.type, e.order_id, e.agent) for e in entries] == [
            ("feed_products", "product:gid://shopify/Product/601", "agent-one"),
            ("feed_products", "product:gid://shopify/InventoryItem/1001", "agent-one")]
        assert state.webhooks.run_pending() == 2
        assert feed_service.patches()[before:] == [["601"], ["501"]]
        products = feed_service.products(feed_id)
        assert products["601"]["title"] == "Hoodie Deluxe"
        tee = products["501"]["variants"][0]
        assert tee["availability"] == {"available": False, "status": "out_of_stock"}
        assert [e.status for e in state.storage.outbox.entries(statuses=["delivered"])] == ["delivered"] * 2
    finally:
        state.adapter.close()


def test_a_feed_patch_is_retried_by_the_outbox(
        tmp_path: pathlib.Path, shopify: FakeShopify, feed_service: FakeFeedService) -> None:
    app = shopify_app(tmp_path, shopify, ACP_AGENTS=agents(feed_service.url),
                      SHOPIFY_WEBHOOK_SECRET=shopify.webhook_secret, ACP_WEBHOOK_DELIVERY_THREAD=False,
                      ACP_WEBHOOK_RETRY_INTERVALS=[1])
    state = app.extensions["acp"]
    try:
        assert push(app).exit_code == 0
        with serve_app(app) as base:
            shopify.subscribe_webhooks(f"{base}/webhooks/shopify", topics=["products/update"])
            shopify.update_product(601, title="Hoodie v2")
            shopify.flush_webhooks()
        feed_service.fail_next("500", match="PATCH /feeds/{id}/products")
        (entry,) = state.storage.outbox.entries(statuses=["pending"])
        assert state.webhooks.deliver(entry.event_id).result == "retry"
        assert state.webhooks.deliver(entry.event_id).result == "delivered"
        (feed_id,) = feed_service.feeds
        assert feed_service.products(feed_id)["601"]["title"] == "Hoodie v2"
    finally:
        state.adapter.close()


def test_an_event_for_an_agent_without_a_feed_yet_is_skipped(
        tmp_path: pathlib.Path, shopify: FakeShopify, feed_service: FakeFeedService) -> None:
    app = shopify_app(tmp_path, shopify, ACP_AGENTS=agents(feed_service.url),
                      SHOPIFY_WEBHOOK_SECRET=shopify.webhook_secret, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    try:
        with serve_app(app) as base:
            shopify.subscribe_webhooks(f"{base}/webhooks/shopify", topics=["products/update"])
            shopify.update_product(601, title="Hoodie v3")
            shopify.flush_webhooks()
        (entry,) = state.storage.outbox.entries(statuses=["pending"])
        outcome = state.webhooks.deliver(entry.event_id)
        assert (outcome.result, outcome.error) == (
            "skipped", "agent 'agent-one' has no feed yet: run 'flask acp feed push'")
        assert feed_service.requests == []
    finally:
        state.adapter.close()


@contextlib.contextmanager
def woo_pushed(tmp_path: pathlib.Path, woo: FakeWooCommerce,
               feed_service: FakeFeedService) -> cabc.Iterator[tuple[Flask, str, int]]:
    """An app on the fake WooCommerce whose catalog was pushed once to a new
    feed: the app, the feed id, and the number of PATCHes so far."""
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_WEBHOOK_DELIVERY_THREAD=False,
                    **woo.config())
    try:
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        yield app, feed_id, len(feed_service.patches())
    finally:
        app.extensions["acp"].adapter.close()


def test_a_woocommerce_product_webhook_patches_just_that_product(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, feed_service: FakeFeedService) -> None:
    with woo_pushed(tmp_path, woo, feed_service) as (app, feed_id, before):
        state = app.extensions["acp"]
        with serve_app(app) as url:
            woo.add_webhook(f"{url}/webhooks/woocommerce", topic="product.updated")
            woo.update_product(22, stock_quantity=4)  # a variation: its parent is patched
            woo.update_product(10, name="Wool Beanie")
            deliveries = [d for d in woo.flush_webhooks() if d.topic != "ping"]
            assert [d.status for d in deliveries] == [200, 200]
        assert state.webhooks.run_pending() == 2
        assert feed_service.patches()[before:] == [["20"], ["10"]]
        products = feed_service.products(feed_id)
        assert products["10"]["title"] == "Wool Beanie"
        large = products["20"]["variants"][1]
        assert (large["id"], large["availability"]) == ("22", {"available": True, "status": "in_stock"})


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal (what an operator's stderr is)."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with feed_cli._progress("products") as tick:
        for _ in range(3):
            tick(1)
    assert "products" in terminal.getvalue()
    assert "3" in terminal.getvalue()
    quiet = io.StringIO()  # cron: not a terminal
    monkeypatch.setattr(sys, "stderr", quiet)
    with feed_cli._progress("products") as tick:
        tick(5)
    assert quiet.getvalue() == ""


def test_with_redis_and_rq_a_product_webhook_is_patched_by_the_worker(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, feed_service: FakeFeedService,
        redis_single: RedisServer) -> None:
    url = f"{redis_single.url}?key_prefix={unique_prefix()}"
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_STORE_URL=url, ACP_REDIS_URL=url,
                    **woo.config())
    state = app.extensions["acp"]
    try:
        assert state.webhooks.mode == "rq"
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        before = len(feed_service.patches())
        with serve_app(app) as base:
            woo.add_webhook(f"{base}/webhooks/woocommerce", topic="product.updated")
            woo.update_product(11, regular_price="39.00")
            assert [d.status for d in woo.flush_webhooks() if d.topic != "ping"] == [200]
        (entry,) = state.storage.outbox.entries(statuses=["pending"])
        assert (entry.type, entry.order_id, entry.session_id) == (
            "feed_products", "product:11", "feed:agent-one")
        result = app.test_cli_runner().invoke(args=["acp", "worker", "--burst"])
        assert result.exit_code == 0, result.output
        assert feed_service.patches()[before:] == [["11"]]
        price = feed_service.products(feed_id)["11"]["variants"][0]["price"]
        assert price == {"amount": 3900, "currency": "USD"}
        delivered = state.storage.outbox.get(entry.event_id)
        assert delivered is not None
        assert delivered.status == "delivered"
    finally:
        state.webhooks.close()
        state.adapter.close()


def test_a_feed_url_must_be_https_outside_loopback_and_testing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match=r"ACP_AGENTS\['agent-one'\].feed_url must be an https:// URL"):
        build_app(tmp_path, TESTING=False, ACP_AGENTS=agents("http://agent.example/acp"))
    with pytest.raises(RuntimeError, match="feed_target_country"):
        build_app(tmp_path, ACP_AGENTS=agents("https://agent.example/acp", feed_target_country="usa"))
    build_app(tmp_path, TESTING=False, ACP_AGENTS=agents("https://agent.example/acp"))


def test_an_incremental_push_to_another_feed_sends_every_product(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url))
    assert push(app).exit_code == 0
    catalog = [p.id for p in app.extensions["acp"].adapter.products]
    client = FeedClient(feed_service.url, token=FEED_TOKEN)
    other = str(client.create_feed("US")["id"])
    client.close()
    moved = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url, feed_id=other))  # the same state file
    result = push(moved)
    assert result.exit_code == 0, result.output
    assert f"feed {other}: {len(catalog)} products sent" in result.output
    assert list(feed_service.products(other)) == catalog


# --- withdrawn products (the Feed API has no delete) ----------------------------------------

DISCONTINUED = {"available": False, "status": "discontinued"}


def test_a_push_withdraws_a_product_no_longer_listed_then_lists_it_again(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url))
    assert push(app).exit_code == 0
    (feed_id,) = feed_service.feeds
    feed = json.loads((pathlib.Path(__file__).parent / "data" / "feed.json").read_text())
    without_mug = {**feed, "products": [p for p in feed["products"] if p["id"] != "prod_mug"]}
    (tmp_path / "feed.json").write_text(json.dumps(without_mug))
    store = json.loads((pathlib.Path(__file__).parent / "data" / "store.json").read_text())
    del store["stock"]["item_456"]
    (tmp_path / "store.json").write_text(json.dumps(store))
    shrunk = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url),
                       ACP_CATALOG_FILE=str(tmp_path / "feed.json"),
                       ACP_STORE_FILE=str(tmp_path / "store.json"))
    result = push(shrunk)
    assert result.exit_code == 0, result.output
    assert "1 products sent in 1 batches" in result.output
    assert "1 no longer listed, withdrawn" in result.output
    assert feed_service.patches()[-1] == ["prod_mug"]
    mug = feed_service.products(feed_id)["prod_mug"]  # valid against openapi.feed.yaml (the fixture checks)
    assert mug["variants"] == [{"id": "item_456", "title": mug["variants"][0]["title"],
                                "availability": DISCONTINUED}]
    patches = len(feed_service.patches())
    again = push(shrunk)  # withdrawn once: an incremental push does not send it again
    assert again.exit_code == 0, again.output
    assert len(feed_service.patches()) == patches
    back = push(build_app(tmp_path, ACP_AGENTS=agents(feed_service.url)))  # the store lists it again
    assert back.exit_code == 0
    assert feed_service.patches()[-1] == ["prod_mug"]
    assert feed_service.products(feed_id)["prod_mug"]["variants"][0]["availability"]["available"] is True


def test_shopify_deleted_and_unpublished_products_are_withdrawn_by_their_webhooks(
        tmp_path: pathlib.Path, shopify: FakeShopify, feed_service: FakeFeedService) -> None:
    app = shopify_app(tmp_path, shopify, ACP_AGENTS=agents(feed_service.url),
                      SHOPIFY_WEBHOOK_SECRET=shopify.webhook_secret, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    try:
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        hoodie = [v["id"] for v in feed_service.products(feed_id)["601"]["variants"]]
        before = len(feed_service.patches())
        with serve_app(app) as base:
            shopify.subscribe_webhooks(f"{base}/webhooks/shopify",
                                       topics=["products/update", "products/delete"])
            shopify.delete_product(601)
            shopify.update_product(501, status="DRAFT")
            assert [d.status for d in shopify.flush_webhooks()] == [200, 200]
        assert state.webhooks.run_pending() == 2
        assert feed_service.patches()[before:] == [["601"], ["501"]]
        products = feed_service.products(feed_id)
        assert [v["id"] for v in products["601"]["variants"]] == hoodie
        assert {json.dumps(v["availability"]) for p in ("601", "501") for v in products[p]["variants"]} \
            == {json.dumps(DISCONTINUED)}
        # the sends recorded what the feed has in the state file: the next push sends nothing
        again = push(app)
        assert again.exit_code == 0, again.output
        assert "0 products sent in 0 batches" in again.output
        assert "2 no longer listed, withdrawn" in again.output
        assert len(feed_service.patches()) == before + 2
    finally:
        state.adapter.close()


def test_a_change_whose_webhook_never_arrived_is_sent_by_the_next_push(
        tmp_path: pathlib.Path, shopify: FakeShopify, feed_service: FakeFeedService) -> None:
    """A webhook's send records what it sent, so a later change that reached
    no webhook (given up, not subscribed) differs from the record: back to
    the state of the last push, the product is still sent."""
    app = shopify_app(tmp_path, shopify, ACP_AGENTS=agents(feed_service.url),
                      SHOPIFY_WEBHOOK_SECRET=shopify.webhook_secret, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    try:
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        title = feed_service.products(feed_id)["601"]["title"]
        with serve_app(app) as base:
            shopify.subscribe_webhooks(f"{base}/webhooks/shopify", topics=["products/update"])
            shopify.update_product(601, title="Hoodie Deluxe")
            shopify.flush_webhooks()
            assert state.webhooks.run_pending() == 1
            shopify.subscribe_webhooks(None)
            shopify.update_product(601, title=title)  # no webhook: the feed still says Deluxe
        assert feed_service.products(feed_id)["601"]["title"] == "Hoodie Deluxe"
        result = push(app)
        assert result.exit_code == 0, result.output
        assert feed_service.patches()[-1] == ["601"]
        assert feed_service.products(feed_id)["601"]["title"] == title
    finally:
        state.adapter.close()


def test_a_woocommerce_deleted_product_is_withdrawn_by_its_webhook(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, feed_service: FakeFeedService) -> None:
    with woo_pushed(tmp_path, woo, feed_service) as (app, feed_id, before):
        state = app.extensions["acp"]
        with serve_app(app) as url:
            woo.add_webhook(f"{url}/webhooks/woocommerce", topic="product.deleted")
            woo.delete_product(10)
            deliveries = [d for d in woo.flush_webhooks() if d.topic != "ping"]
            assert [(d.topic, d.status) for d in deliveries] == [("product.deleted", 200)]
        assert state.webhooks.run_pending() == 1
        assert feed_service.patches()[before:] == [["10"]]
        (variant,) = feed_service.products(feed_id)["10"]["variants"]
        assert (variant["id"], variant["availability"]) == ("10", DISCONTINUED)


def test_a_woocommerce_product_deleted_again_after_a_restore_is_withdrawn_again(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, feed_service: FakeFeedService) -> None:
    """``product.deleted`` carries ``{"id": N}`` alone: a second deletion of the
    same product (trashed, restored, trashed again) is a new event, not a
    redelivery of the first, and must withdraw it again."""
    app = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url), ACP_WEBHOOK_DELIVERY_THREAD=False,
                    **woo.config())
    state = app.extensions["acp"]
    try:
        assert push(app).exit_code == 0
        (feed_id,) = feed_service.feeds
        with serve_app(app) as url:
            woo.add_webhook(f"{url}/webhooks/woocommerce", topic="product.deleted")
            woo.add_webhook(f"{url}/webhooks/woocommerce", topic="product.updated")
            woo.delete_product(10)
            woo.flush_webhooks()
            assert state.webhooks.run_pending() == 1
            woo.update_product(10, status="publish")  # restored from the trash
            woo.flush_webhooks()
            assert state.webhooks.run_pending() == 1
            assert feed_service.products(feed_id)["10"]["variants"][0]["availability"]["available"] is True
            woo.delete_product(10)
            woo.flush_webhooks()
            assert state.webhooks.run_pending() == 1
        (variant,) = feed_service.products(feed_id)["10"]["variants"]
        assert variant["availability"] == DISCONTINUED
    finally:
        state.adapter.close()


class SkippingCatalog(CatalogAdapter):
    """A listing that skips ``prod_mug`` (a page boundary that moved under an
    offset-paginated listing: WooCommerce ``page=N``, a product deleted on an
    earlier page meanwhile) while the product is still sold, as reading it by
    id shows."""

    skip = "prod_mug"

    def iter_products(self) -> cabc.Iterator[ProductRecord]:
        return (p for p in super().iter_products() if p.id != self.skip)

    def read_products(self, product_ids: cabc.Sequence[str]) -> list[ProductRecord]:
        found = {p.id: p for p in super().iter_products()}
        return [found[i] for i in product_ids if i in found]


def test_a_product_a_listing_skipped_but_still_sold_is_not_withdrawn(
        tmp_path: pathlib.Path, feed_service: FakeFeedService) -> None:
    assert push(build_app(tmp_path, ACP_AGENTS=agents(feed_service.url))).exit_code == 0
    (feed_id,) = feed_service.feeds
    mug = feed_service.products(feed_id)["prod_mug"]
    skipping = build_app(tmp_path, ACP_AGENTS=agents(feed_service.url),
                         ACP_ADAPTER=f"{__name__}:SkippingCatalog")
    result = push(skipping)
    assert result.exit_code == 0, result.output
    assert "withdrawn" not in result.output
    assert feed_service.products(feed_id)["prod_mug"] == mug
