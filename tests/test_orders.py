"""Order changes after the sale: the order service, its CLI, the outbox."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import typing as t

import pytest
from flask import Flask

from flask_acp.catalog import CatalogAdapter
from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import InvalidRequestError
from flask_acp.errors import NotFoundError
from flask_acp.errors import PaymentUnavailableError
from flask_acp.errors import UnavailableError
from flask_acp.models import Adjustment
from flask_acp.testing import FakePaymentProcessor
from flask_acp.versions.v2026_04_17 import render_event
from flask_acp.versions.v2026_04_17 import render_order
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import validate


def _buy(agent: Agent, items: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any]:
    session = agent.ready_session(items or [{"id": "item_123", "quantity": 2}, {"id": "item_456"}])
    done = agent.complete(session["id"]).get_json()
    assert done["status"] == "completed"
    return t.cast(dict[str, t.Any], done)


def _outbox(app: Flask, status: str = "pending") -> list[t.Any]:
    return app.extensions["acp"].storage.outbox.entries(statuses=[status])


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
    total = next(x["amount"] for x in done["totals"] if x["type"] == "total")
    assert [(a.type, a.status, a.amount) for a in order.adjustments] == [
        ("cancellation", "completed", None), ("refund", "completed", total)]
    assert order.amount_refunded == total
    assert orders.cancel(done["order"]["id"]) == order  # idempotent: no second refund
    refunds = app.extensions["acp"].payments.operations("refund")
    assert [r["amount"] for r in refunds] == [total]
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
    result = runner.invoke(args=["acp", "orders", "refund", order_id, "--amount", "100",
                                 "--refund-id", "rf_cli"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"][1]["amount"] == 100
    result = runner.invoke(args=["acp", "orders", "refund", order_id, "--amount", "100",
                                 "--refund-id", "rf_cli"])
    assert json.loads(result.output)["totals"][1]["amount"] == 100  # same refund id: once
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


class FlakyRefunds(FakePaymentProcessor):
    """Refunds fail with an outage the first ``failures`` times."""

    failures = 0

    def refund(self, payment_id: str, **kwargs: t.Any) -> t.Any:
        if self.failures:
            self.failures -= 1
            raise PaymentUnavailableError("down", retry_after=3)
        return super().refund(payment_id, **kwargs)


def test_refund_partial_then_rest_idempotent(tmp_path: pathlib.Path) -> None:
    processor = FlakyRefunds()
    app = build_app(tmp_path, payment_processor=processor)
    done = _buy(Agent(app.test_client()))
    orders = app.extensions["acp"].orders
    order_id = done["order"]["id"]
    total = next(x["amount"] for x in done["totals"] if x["type"] == "total")
    order = orders.refund(order_id, amount=300, refund_id="rf_1", reason="damaged")
    assert order.amount_refunded == 300
    assert orders.refund(order_id, amount=300, refund_id="rf_1") == order  # same refund: nothing new
    with pytest.raises(InvalidRequestError):
        orders.refund(order_id, amount=total, refund_id="rf_2")  # more than what is left
    processor.failures = 1
    with pytest.raises(UnavailableError):
        orders.refund(order_id, refund_id="rf_3")  # the rest; the processor is down
    pending = orders.get(order_id).adjustments[-1]
    assert (pending.id, pending.status, pending.amount) == ("rf_3", "pending", total - 300)
    order = orders.refund(order_id, refund_id="rf_3")  # retried: finishes the same refund
    assert order.amount_refunded == total
    assert [r["amount"] for r in processor.operations("refund")] == [300, total - 300]
    _valid_order(render_order(order))
    with pytest.raises(InvalidRequestError):
        orders.refund(order_id, amount=1)


def test_order_that_cannot_be_placed_is_refunded(tmp_path: pathlib.Path) -> None:
    processor = FakePaymentProcessor()
    app = build_app(tmp_path, payment_processor=processor,
                    ACP_ADAPTER="tests.test_orders:RejectingCatalog")
    agent = Agent(app.test_client())
    session = agent.ready_session([{"id": "item_123"}])
    response = agent.complete(session["id"])
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "not_ready_for_payment"
    assert "order" not in body
    assert body["messages"][-1]["type"] == "error"
    assert "warehouse closed" in body["messages"][-1]["content"]
    total = next(x["amount"] for x in session["totals"] if x["type"] == "total")
    assert [c["amount"] for c in processor.charges()] == [total]
    assert [r["amount"] for r in processor.operations("refund")] == [total]


class RejectingCatalog(CatalogAdapter):
    def place_order(self, session: t.Any, payment: t.Any) -> t.Any:
        raise AdapterRejectedError("warehouse closed")
