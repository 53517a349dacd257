"""Stock holds cannot be hoarded (README "Stock holds"): a session holds stock
only once it is payable, for at most ``ACP_STOCK_HOLD_TTL`` seconds from then
however often it is updated, and the last unit is still never sold twice.

Agent A ("agent-one") tries to keep an item out of stock; agent B
("agent-two") tries to buy it. On the embedded catalog (SQLite and Redis
ledgers), the Shopify fake and the WooCommerce fake."""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import pathlib
import typing as t

import pytest
from flask import Flask

from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_woocommerce import DEMO_SEED
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from flask_acp.testing.fakes.shopify import FakeShopify
from tests.conftest import ADDRESS
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix
from tests.test_shopify import STORE

TTL = 900


class Clock:
    """One movable clock for the checkout core and the adapter."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def status_codes(body: dict[str, t.Any]) -> list[str]:
    return [m["code"] for m in body.get("messages", []) if m["type"] == "error"]


def update(agent: Agent, sid: str, **body: t.Any) -> dict[str, t.Any]:
    response = agent.post(f"/checkout_sessions/{sid}", body)
    assert response.status_code == 200, response.get_json()
    return t.cast(dict[str, t.Any], response.get_json())


def create(agent: Agent, items: list[dict[str, t.Any]], *, address: bool) -> dict[str, t.Any]:
    fields: dict[str, t.Any] = {"buyer": {"email": "a@example.com", "first_name": "Ann"}}
    if address:
        fields["fulfillment_details"] = {"name": ADDRESS["name"], "address": ADDRESS}
    response = agent.create(items, **fields)
    assert response.status_code == 201, response.get_json()
    return t.cast(dict[str, t.Any], response.get_json())


def buy(agent: Agent, item: str, quantity: int = 1) -> dict[str, t.Any]:
    """Create a payable session and complete it; the completed session (or the refusal)."""
    body = create(agent, [{"id": item, "quantity": quantity}], address=True)
    if body["status"] != "ready_for_payment":
        return body
    done = agent.complete(body["id"])
    assert done.status_code == 200, done.get_json()
    return t.cast(dict[str, t.Any], done.get_json())


# --------------------------------------------------------------------------- the catalog


@pytest.fixture(params=["sqlite", "redis"])
def catalog(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> tuple[Flask, Clock]:
    """An app on the embedded catalog (item_456: 5 units, last_unit: 1), its
    stock in SQLite or in Redis, on one movable clock."""
    config: dict[str, t.Any] = {}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_single")
        config.update(ACP_STORE_URL=f"{server.url}?key_prefix={unique_prefix()}", ACP_REDIS_URL="")
    app = build_app(tmp_path, **config)
    clock = Clock()
    state = app.extensions["acp"]
    state.service.clock = clock
    state.adapter._clock = clock
    return app, clock


def agents(app: Flask) -> tuple[Agent, Agent]:
    return Agent(app.test_client()), Agent(app.test_client(), key=OTHER_KEY)


def test_sessions_that_cannot_be_paid_hold_nothing(catalog: tuple[Flask, Clock]) -> None:
    app, clock = catalog
    a, b = agents(app)
    # A asks for every unit in sessions without an address, and keeps updating them
    hoard = [create(a, [{"id": "item_456"}], address=False) for _ in range(5)]
    hoard.append(create(a, [{"id": "item_456", "quantity": 5}], address=False))
    for _ in range(3):
        clock.advance(60)
        for session in hoard:
            body = update(a, session["id"], buyer={"email": "a@example.com", "first_name": "Ann"})
            assert body["status"] == "not_ready_for_payment"
            assert "out_of_stock" not in status_codes(body)
    assert app.extensions["acp"].adapter.ledger.held_counts() == {}
    done = buy(b, "item_456", 5)
    assert done["status"] == "completed", done["messages"]
    # and A is told the truth about the stock
    assert "out_of_stock" in status_codes(update(a, hoard[0]["id"], line_items=[{"id": "item_456"}]))


def test_a_payable_session_holds_for_the_ttl_only_however_often_it_is_updated(
        catalog: tuple[Flask, Clock]) -> None:
    app, clock = catalog
    a, b = agents(app)
    hoard = [create(a, [{"id": "item_456"}], address=True) for _ in range(5)]
    assert {s["status"] for s in hoard} == {"ready_for_payment"}
    # held: B finds nothing while A's hold window is open, whatever A updates
    for step in range(4):
        clock.advance(200)  # 800 s of the 900 s window
        for session in hoard:
            body = update(a, session["id"], line_items=[{"id": "item_456", "quantity": 1}],
                          buyer={"email": f"a{step}@example.com"})
            assert body["status"] == "ready_for_payment", body["messages"]
        refused = create(b, [{"id": "item_456"}], address=True)
        assert refused["status"] == "not_ready_for_payment"
        assert "out_of_stock" in status_codes(refused)
    # the window closes 900 s after each session first became payable, updates or not
    clock.advance(TTL - 800)
    for session in hoard:  # A's updates no longer hold anything
        assert update(a, session["id"], buyer={"email": "late@example.com"})["status"] == "ready_for_payment"
    assert app.extensions["acp"].adapter.ledger.held_counts() == {}
    done = buy(b, "item_456", 5)
    assert done["status"] == "completed", done["messages"]
    # A's sessions, payable when last quoted, are not charged for units B bought
    late = a.complete(hoard[0]["id"]).get_json()
    assert late["status"] == "not_ready_for_payment"
    assert "out_of_stock" in status_codes(late)
    processor = app.extensions["acp"].payments
    assert isinstance(processor, FakePaymentProcessor)
    assert len(processor.charges()) == 1


def test_a_lapsed_hold_is_not_renewed_by_becoming_payable_again(catalog: tuple[Flask, Clock]) -> None:
    app, clock = catalog
    a, b = agents(app)
    session = create(a, [{"id": "last_unit"}], address=True)
    assert session["status"] == "ready_for_payment"
    # not payable any more (a quantity above the stock), then payable again: the same window
    assert update(a, session["id"], line_items=[{"id": "last_unit", "quantity": 2}])["status"] \
        == "not_ready_for_payment"
    assert app.extensions["acp"].adapter.ledger.held_counts() == {}
    clock.advance(TTL + 1)
    assert update(a, session["id"], line_items=[{"id": "last_unit"}])["status"] == "ready_for_payment"
    assert app.extensions["acp"].adapter.ledger.held_counts() == {}
    assert buy(b, "last_unit")["status"] == "completed"


def test_the_last_unit_is_never_sold_twice(catalog: tuple[Flask, Clock]) -> None:
    """Two payable sessions, one unit: A's hold lapsed, B holds it; then both
    lapsed. Whatever the order of the completions, one sale, one charge."""
    app, clock = catalog
    a, b = agents(app)
    processor = app.extensions["acp"].payments
    assert isinstance(processor, FakePaymentProcessor)
    first = create(a, [{"id": "last_unit"}], address=True)
    clock.advance(TTL + 1)
    second = create(b, [{"id": "last_unit"}], address=True)  # A no longer holds it: B does
    assert (first["status"], second["status"]) == ("ready_for_payment", "ready_for_payment")
    refused = a.complete(first["id"]).get_json()
    assert refused["status"] == "not_ready_for_payment"
    assert "out_of_stock" in status_codes(refused)
    assert processor.charges() == []
    assert b.complete(second["id"]).get_json()["status"] == "completed"
    assert len(processor.charges()) == 1
    assert app.extensions["acp"].adapter.ledger.sold("last_unit") == 1


def test_two_lapsed_payable_sessions_and_the_last_unit(catalog: tuple[Flask, Clock]) -> None:
    app, clock = catalog
    a, b = agents(app)
    processor = app.extensions["acp"].payments
    assert isinstance(processor, FakePaymentProcessor)
    first = create(a, [{"id": "last_unit"}], address=True)
    clock.advance(TTL + 1)
    second = create(b, [{"id": "last_unit"}], address=True)
    clock.advance(TTL + 1)  # neither holds it now; both were payable when last quoted
    assert app.extensions["acp"].adapter.ledger.held_counts() == {"last_unit": 1}  # expired, not purged
    assert a.complete(first["id"]).get_json()["status"] == "completed"  # complete holds it again
    late = b.complete(second["id"]).get_json()
    assert late["status"] == "not_ready_for_payment"
    assert "out_of_stock" in status_codes(late)
    assert len(processor.charges()) == 1
    assert app.extensions["acp"].adapter.ledger.sold("last_unit") == 1


def test_the_hold_ttl_is_a_setting(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_STOCK_HOLD_TTL=60)
    clock = Clock()
    app.extensions["acp"].service.clock = clock
    app.extensions["acp"].adapter._clock = clock
    a, b = agents(app)
    create(a, [{"id": "last_unit"}], address=True)
    assert create(b, [{"id": "last_unit"}], address=True)["status"] == "not_ready_for_payment"
    clock.advance(61)
    assert buy(b, "last_unit")["status"] == "completed"
    with pytest.raises(RuntimeError, match="ACP_STOCK_HOLD_TTL"):
        build_app(tmp_path / "bad", ACP_STOCK_HOLD_TTL=10)


# --------------------------------------------------------------------------- Shopify


@pytest.fixture
def shopify(tmp_path: pathlib.Path) -> cabc.Iterator[tuple[Flask, FakeShopify]]:
    with FakeShopify(STORE) as shop:
        app = build_app(tmp_path, ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL=shop.url,
                        SHOPIFY_ACCESS_TOKEN=shop.access_token, SHOPIFY_TIMEOUT=2, SHOPIFY_READY_TIMEOUT=2)
        state = app.extensions["acp"]
        state.service.clock = shop.now  # one clock: Shopify's reservations, the core, the adapter
        state.adapter.clock = shop.now
        yield app, shop
        state.adapter.close()


def test_shopify_drafts_reserve_only_payable_sessions_for_the_ttl(shopify: tuple[Flask, FakeShopify]) -> None:
    app, shop = shopify
    a, b = agents(app)
    # 1002 has one unit; A's sessions without an address reserve nothing
    hoard = [create(a, [{"id": "1002"}], address=False) for _ in range(2)]
    for session in hoard:
        assert update(a, session["id"], buyer={"email": "a@example.com"})["status"] == "not_ready_for_payment"
    assert shop.sellable(1002) == 1
    # payable: reserved, until 900 s after, not moved by updates
    held = update(a, hoard[0]["id"], fulfillment_details={"name": "Ann", "address": ADDRESS})
    assert held["status"] == "ready_for_payment"
    assert shop.sellable(1002) == 0
    refused = create(b, [{"id": "1002"}], address=True)
    assert "out_of_stock" in status_codes(refused)
    shop.advance_clock(TTL - 100)
    update(a, hoard[0]["id"], buyer={"email": "again@example.com"})
    assert shop.sellable(1002) == 0
    shop.advance_clock(101)
    assert update(a, hoard[0]["id"], buyer={"email": "late@example.com"})["status"] == "ready_for_payment"
    assert shop.sellable(1002) == 1  # the draft's reservation was cleared, not renewed
    done = buy(b, "1002")
    assert done["status"] == "completed", done["messages"]
    late = a.complete(hoard[0]["id"]).get_json()
    assert late["status"] == "not_ready_for_payment"
    assert "out_of_stock" in status_codes(late)
    assert len(shop.order_list()) == 1
    assert shop.variants[1002].inventory == 0


# --------------------------------------------------------------------------- WooCommerce


@pytest.fixture
def woo(tmp_path: pathlib.Path) -> cabc.Iterator[tuple[Flask, FakeWooCommerce, Clock]]:
    with FakeWooCommerce(DEMO_SEED) as fake:
        app = build_app(tmp_path, payment_processor=FakePaymentProcessor(str(tmp_path / "ledger.sqlite3")),
                        **fake.config())
        clock = Clock()
        clock.now = dt.datetime.fromtimestamp(fake.now(), dt.timezone.utc)
        app.extensions["acp"].service.clock = clock
        yield app, fake, clock
        app.extensions["acp"].adapter.close()


def test_woocommerce_holds_only_payable_sessions_and_not_past_the_ttl(
        woo: tuple[Flask, FakeWooCommerce, Clock]) -> None:
    app, fake, clock = woo

    def advance(seconds: float) -> None:
        clock.advance(seconds)
        fake.advance_clock(seconds)

    a, b = agents(app)
    # product 13 has one unit; sessions without an address hold nothing
    hoard = [create(a, [{"id": "13"}], address=False) for _ in range(2)]
    for session in hoard:
        assert update(a, session["id"], buyer={"email": "a@example.com"})["status"] == "not_ready_for_payment"
    assert fake.held(13) == 0
    held = update(a, hoard[0]["id"], fulfillment_details={"name": "Ann", "address": ADDRESS})
    assert held["status"] == "ready_for_payment"
    assert fake.held(13) == 1
    # A keeps renewing WooCommerce's 10-minute hold within its window...
    advance(500)
    update(a, hoard[0]["id"], buyer={"email": "a2@example.com"})
    advance(500)  # ...but past the window (900 s) an update no longer renews it
    update(a, hoard[0]["id"], buyer={"email": "a3@example.com"})
    advance(101)  # WooCommerce's last 10-minute hold (taken at 500 s) is over
    assert fake.held(13) == 0
    done = buy(b, "13")
    assert done["status"] == "completed", done["messages"]
    late = a.complete(hoard[0]["id"]).get_json()
    assert late["status"] == "not_ready_for_payment"
    assert fake.stock(13) == 0


def test_completes_with_a_token_of_another_session_do_not_renew_the_hold(
        catalog: tuple[Flask, Clock]) -> None:
    """A ``complete`` whose token another session already holds charges nothing
    and counts no failed payment: it must not hold the stock again either, or
    one such request every few minutes keeps the item out of stock for ever."""
    app, clock = catalog
    a, b = agents(app)
    hoard = create(a, [{"id": "item_456", "quantity": 5}], address=True)
    decoy = create(a, [{"id": "item_123"}], address=True)
    assert a.complete(decoy["id"], "spt_decline_hoarder").status_code == 200  # the token is decoy's now
    clock.advance(TTL + 1)  # the window is over
    for _ in range(3):
        body = a.complete(hoard["id"], "spt_decline_hoarder").get_json()
        assert body["status"] == "ready_for_payment", body
        assert "invalid" in status_codes(body)
        other = create(b, [{"id": "item_456"}], address=True)
        assert other["status"] == "ready_for_payment", other["messages"]
        assert b.post(f"/checkout_sessions/{other['id']}/cancel", {}).status_code == 200
        clock.advance(300)


def test_a_failed_payment_holds_nothing_past_the_window(catalog: tuple[Flask, Clock]) -> None:
    """``complete`` holds the stock for the charge's time budget; a charge that
    fails gives back what the window no longer covers, so bad credentials sent
    again and again cannot keep an item out of stock."""
    app, clock = catalog
    a, b = agents(app)
    late = create(a, [{"id": "last_unit"}], address=True)
    clock.advance(TTL + 1)  # the window is over
    body = a.complete(late["id"], "spt_decline_1").get_json()
    assert "payment_declined" in status_codes(body)
    assert buy(b, "last_unit")["status"] == "completed"


def test_a_failed_payment_within_the_window_holds_until_the_window_ends(
        catalog: tuple[Flask, Clock]) -> None:
    app, clock = catalog
    a, b = agents(app)
    early = create(a, [{"id": "last_unit"}], address=True)
    clock.advance(TTL - 10)
    assert "payment_declined" in status_codes(a.complete(early["id"], "spt_decline_2").get_json())
    assert "out_of_stock" in status_codes(create(b, [{"id": "last_unit"}], address=True))  # still held
    clock.advance(11)  # the window ends: not the charge's budget later
    assert buy(b, "last_unit")["status"] == "completed"
