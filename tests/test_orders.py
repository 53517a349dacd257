"""Order changes after the sale: the order service, its CLI, the outbox."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
from flask import Flask

from flask_acp.errors import InvalidRequestError
from flask_acp.errors import NotFoundError
from flask_acp.models import Adjustment
from flask_acp.versions.v2026_04_17 import render_event
from flask_acp.versions.v2026_04_17 import render_order
from tests.conftest import Agent
from tests.spec import validate


def _buy(agent: Agent, items: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any]:
    session = agent.ready_session(items or [{"id": "item_123", "quantity": 2}, {"id": "item_456"}])
    done = agent.complete(session["id"]).get_json()
    assert done["status"] == "completed"
    return t.cast(dict[str, t.Any], done)


def _outbox(app: Flask, status: str = "pending") -> list[t.Any]:
    return app.extensions["acp"].store.outbox_list(statuses=[status])


def _valid_order(order_body: dict[str, t.Any]) -> None:
    data = dict(order_body)
    assert data.pop("type") == "order"
    validate(data, "Order")


def test_completion_writes_order_create_event_with_full_order(app: Flask, agent: Agent) -> None:
    done = _buy(agent)
    events = _outbox(app)
    assert [(e.type, e.order_id) for e in events] == [("order_create", done["order"]["id"])]
    order = app.extensions["acp"].orders.get(done["order"]["id"])
    body = render_event("order_create", order)
    _valid_order(body["data"])
    lines = body["data"]["line_items"]
    assert [(li["title"], li["quantity"]) for li in lines] == [
        ("Vintage Denim Jacket", {"ordered": 2, "current": 2, "fulfilled": 0}),
        ("Stoneware Mug", {"ordered": 1, "current": 1, "fulfilled": 0}),
    ]
    total = next(x["amount"] for x in done["totals"] if x["type"] == "total")
    assert body["data"]["totals"] == [
        {"type": "total", "display_text": "Total", "amount": total},
        {"type": "amount_refunded", "display_text": "Refunded", "amount": 0},
    ]


def test_ship_partially_then_rest_then_deliver(app: Flask, agent: Agent) -> None:
    done = _buy(agent)
    orders = app.extensions["acp"].orders
    order_id = done["order"]["id"]
    jacket_line = done["line_items"][0]["id"]
    order = orders.ship(order_id, carrier="USPS", tracking_number="9400", line_items={jacket_line: 1},
                        fulfillment_id="shp_1")
    body = render_order(order)
    _valid_order(body)
    assert body["status"] == "shipped"
    assert body["line_items"][0]["quantity"]["fulfilled"] == 1
    assert body["line_items"][0]["status"] == "partial"
    assert body["fulfillments"][0]["tracking_number"] == "9400"
    # the same shipment reported again changes nothing and queues nothing
    assert orders.ship(order_id, carrier="USPS", tracking_number="9400", fulfillment_id="shp_1") == order
    order = orders.ship(order_id, carrier="UPS", tracking_number="1Z")
    assert [line.status for line in order.line_items] == ["fulfilled", "fulfilled"]
    with pytest.raises(InvalidRequestError):
        orders.ship(order_id, carrier="UPS")
    order = orders.deliver(order_id)
    assert order.status == "completed"
    assert {f.status for f in order.fulfillments} == {"delivered"}
    _valid_order(render_order(order))
    kinds = [e.type for e in _outbox(app)]
    assert kinds == ["order_create", "order_update", "order_update", "order_update"]


def test_cancel_removes_unshipped_units(app: Flask, agent: Agent) -> None:
    done = _buy(agent)
    orders = app.extensions["acp"].orders
    order = orders.cancel(done["order"]["id"], reason="out of stock at the warehouse")
    assert order.status == "canceled"
    assert [line.status for line in order.line_items] == ["removed", "removed"]
    assert order.adjustments[-1].type == "cancellation"
    assert orders.cancel(done["order"]["id"]) == order  # idempotent
    with pytest.raises(InvalidRequestError):
        orders.ship(done["order"]["id"], carrier="UPS")
    _valid_order(render_order(order))


def test_refund_adjustments_feed_amount_refunded(app: Flask, agent: Agent) -> None:
    done = _buy(agent)
    orders = app.extensions["acp"].orders
    now = dt.datetime.now(dt.timezone.utc)
    refund = Adjustment(id="re_1", type="refund", occurred_at=now, status="pending", amount=300,
                        currency="usd", reason="requested_by_customer")
    orders.record_adjustment(done["order"]["id"], refund)
    order = orders.record_adjustment(done["order"]["id"], refund)  # duplicate webhook: no change
    assert order.amount_refunded == 0
    order = orders.record_adjustment(done["order"]["id"], Adjustment(
        id="re_1", type="refund", occurred_at=now, status="completed", amount=300, currency="usd"))
    assert order.amount_refunded == 300
    assert len(order.adjustments) == 1
    body = render_order(order)
    _valid_order(body)
    assert body["totals"][1] == {"type": "amount_refunded", "display_text": "Refunded", "amount": 300}
    assert len(_outbox(app)) == 3  # create + pending refund + completed refund


def test_unknown_order(app: Flask) -> None:
    with pytest.raises(NotFoundError):
        app.extensions["acp"].orders.ship("ord_nope", carrier="UPS")


def test_cli_ship_deliver_cancel(app: Flask, agent: Agent) -> None:
    done = _buy(agent, [{"id": "item_123"}])
    order_id = done["order"]["id"]
    runner = app.test_cli_runner()
    result = runner.invoke(args=["acp", "orders", "ship", order_id, "--carrier", "USPS",
                                 "--tracking-number", "9400111"])
    assert result.exit_code == 0, result.output
    shipped = json.loads(result.output)
    assert shipped["status"] == "shipped"
    assert shipped["fulfillments"][0]["carrier"] == "USPS"
    result = runner.invoke(args=["acp", "orders", "deliver", order_id])
    assert json.loads(result.output)["status"] == "completed"
    result = runner.invoke(args=["acp", "orders", "cancel", order_id])
    assert result.exit_code != 0
    assert "completed" in result.output
    result = runner.invoke(args=["acp", "orders", "show", "ord_missing"])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_cli_ship_bad_line_spec(app: Flask, agent: Agent) -> None:
    done = _buy(agent, [{"id": "item_123"}])
    result = app.test_cli_runner().invoke(
        args=["acp", "orders", "ship", done["order"]["id"], "--line", "nonsense"])
    assert result.exit_code != 0
    assert "LINE_ID:UNITS" in result.output
