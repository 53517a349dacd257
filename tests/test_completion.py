"""Exactly-once completion: declines, lost responses, outages, crashes, the
sweeper, unready sessions and price changes.

Everything goes through the HTTP API (the validating test client), with the
real SQLite store, the real catalog adapter and a FakePaymentProcessor whose
ledger is a SQLite file we can inspect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import sqlite3
import typing as t
import uuid

import pytest
from flask import Flask

from flask_acp.catalog import CatalogAdapter
from flask_acp.errors import AdapterUnavailableError
from flask_acp.models import CheckoutSession
from flask_acp.models import Order
from flask_acp.models import PaymentRecord
from flask_acp.models import Quote
from flask_acp.testing import FakePaymentProcessor
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.conftest import build_app

#: a session for item_123 ($3.00) shipped Standard ($1.00) to CA (10 %): 300 + 30 + 100.
TOTAL = 430


class FlakyCatalogAdapter(CatalogAdapter):
    """The catalog adapter with faults to inject: ``place_order`` failures
    (as if the worker crashed after the charge) and a price change between
    the last quote and the charge."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.place_order_failures = 0
        self.place_order_calls = 0
        self.price_increase = 0

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        self.place_order_calls += 1
        if self.place_order_failures:
            self.place_order_failures -= 1
            raise AdapterUnavailableError("the storefront went away")
        return super().place_order(session, payment)

    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        quote = super().prepare_order(session, hold_until=hold_until)
        if not self.price_increase:
            return quote
        lines = tuple(dataclasses.replace(line, unit_amount=line.unit_amount + self.price_increase)
                      for line in quote.lines)
        return dataclasses.replace(quote, lines=lines)


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def processor(ledger: pathlib.Path) -> FakePaymentProcessor:
    return FakePaymentProcessor(str(ledger))


@pytest.fixture
def app(tmp_path: pathlib.Path, processor: FakePaymentProcessor) -> Flask:
    return build_app(tmp_path, payment_processor=processor, ACP_ORDER_PLACEMENT_RETRIES=[],
                     ACP_ADAPTER="tests.test_completion:FlakyCatalogAdapter")


@pytest.fixture
def adapter(app: Flask) -> FlakyCatalogAdapter:
    adapter = app.extensions["acp"].adapter
    assert isinstance(adapter, FlakyCatalogAdapter)
    return adapter


@pytest.fixture
def agent(app: Flask) -> Agent:
    return Agent(app.test_client())


def ledger_rows(path: pathlib.Path) -> list[dict[str, t.Any]]:
    """Every charge attempt the processor recorded, successful or not."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [{"idempotency_key": key, **json.loads(result)}
                for key, result in db.execute("SELECT idempotency_key, result FROM fake_charges")]


def orders(tmp_path: pathlib.Path, session_id: str | None = None) -> list[tuple[str, ...]]:
    with sqlite3.connect(tmp_path / "acp.sqlite3") as db:
        rows = db.execute("SELECT * FROM acp_catalog_orders").fetchall()
    return [r for r in rows if session_id is None or session_id in r]


def get(agent: Agent, sid: str) -> dict[str, t.Any]:
    response = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert response.status_code == 200
    return t.cast(dict[str, t.Any], response.get_json())


def total_of(session: dict[str, t.Any]) -> int:
    return int(next(e["amount"] for e in session["totals"] if e["type"] == "total"))


def messages(session: dict[str, t.Any]) -> list[tuple[str, str | None]]:
    return [(m["type"], m.get("code")) for m in session["messages"]]


# --- declines -------------------------------------------------------------------------


def test_decline_then_new_token_completes(agent: Agent, processor: FakePaymentProcessor,
                                          tmp_path: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    response = agent.complete(sid, "spt_decline_1")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready_for_payment"
    assert "order" not in body
    assert messages(body) == [("error", "payment_declined")]
    assert body["messages"][0]["param"] == "$.payment_data"
    assert processor.charges() == []
    assert orders(tmp_path) == []
    # The message is about that attempt; the stored session is payable.
    assert get(agent, sid)["status"] == "ready_for_payment"

    response = agent.complete(sid, "spt_good")
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "completed"
    assert done["order"]["checkout_session_id"] == sid
    assert done["messages"] == []
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(done) == TOTAL
    assert len(orders(tmp_path, sid)) == 1


def test_same_token_new_key_after_decline_is_declined_again_without_new_charge(
        agent: Agent, processor: FakePaymentProcessor, ledger: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    first = agent.complete(sid, "spt_decline_same")
    assert messages(first.get_json()) == [("error", "payment_declined")]
    assert len(ledger_rows(ledger)) == 1

    again = agent.complete(sid, "spt_decline_same")  # a new Idempotency-Key
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    body = again.get_json()
    assert body["status"] == "ready_for_payment"
    assert messages(body) == [("error", "payment_declined")]
    rows = ledger_rows(ledger)
    assert len(rows) == 1
    assert rows[0]["status"] == "declined"
    assert processor.charges() == []


@pytest.mark.parametrize(("token", "code", "param"), [
    ("spt_expired_1", "invalid", "$.payment_data.instrument.credential.token"),
    ("spt_3ds_1", "requires_3ds", "$.payment_data"),
])
def test_other_payment_failures_keep_the_session_payable(agent: Agent, processor: FakePaymentProcessor,
                                                         token: str, code: str, param: str) -> None:
    sid = agent.ready_session()["id"]
    body = agent.complete(sid, token).get_json()
    assert body["status"] == "ready_for_payment"
    assert messages(body) == [("error", code)]
    assert body["messages"][0]["param"] == param
    assert processor.charges() == []
    assert agent.complete(sid, "spt_ok").get_json()["status"] == "completed"
    assert len(processor.charges()) == 1


# --- lost responses -------------------------------------------------------------------


def lost_charge(agent: Agent, processor: FakePaymentProcessor) -> str:
    """A ready session whose charge went through but whose response was lost."""
    sid = str(agent.ready_session()["id"])
    response = agent.complete(sid, "spt_lost_1")
    assert response.status_code == 503
    error = response.get_json()
    assert (error["type"], error["code"]) == ("service_unavailable", "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert len(processor.charges()) == 1  # the money moved
    session = get(agent, sid)
    assert session["status"] == "complete_in_progress"
    assert "order" not in session
    return sid


def test_lost_response_retry_with_same_token(agent: Agent, processor: FakePaymentProcessor,
                                             tmp_path: pathlib.Path) -> None:
    sid = lost_charge(agent, processor)
    # Update and cancel must wait while the payment is unsettled.
    assert agent.post(f"/checkout_sessions/{sid}/cancel").status_code == 409
    response = agent.complete(sid, "spt_lost_1")  # another Idempotency-Key, same token
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["status"] == "completed"
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(done) == TOTAL
    assert len(orders(tmp_path, sid)) == 1
    assert get(agent, sid)["order"] == done["order"]


def test_lost_response_retry_with_another_token(agent: Agent, processor: FakePaymentProcessor,
                                                ledger: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sid = lost_charge(agent, processor)
    response = agent.complete(sid, "spt_other_token")
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["status"] == "completed"
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(done) == TOTAL
    assert len(ledger_rows(ledger)) == 1  # the other token was never charged
    assert len(orders(tmp_path, sid)) == 1


def test_sweeper_finishes_a_lost_completion(app: Flask, agent: Agent, processor: FakePaymentProcessor,
                                            tmp_path: pathlib.Path) -> None:
    sid = lost_charge(agent, processor)
    result = app.test_cli_runner().invoke(args=["acp", "sweep", "--stuck-after", "0"])
    assert result.exit_code == 0, result.output
    assert "recovered=1" in result.output
    session = get(agent, sid)
    assert session["status"] == "completed"
    assert session["order"]["checkout_session_id"] == sid
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(session)
    assert len(orders(tmp_path, sid)) == 1
    # A late agent retry sees the terminal state; nothing more is charged.
    assert agent.complete(sid, "spt_lost_1").status_code == 405
    assert len(processor.charges()) == 1


def test_sweeper_leaves_fresh_completions_alone(app: Flask, agent: Agent,
                                                processor: FakePaymentProcessor) -> None:
    sid = lost_charge(agent, processor)
    result = app.test_cli_runner().invoke(args=["acp", "sweep"])  # default: the lock lease
    assert result.exit_code == 0, result.output
    assert "recovered=0" in result.output
    assert get(agent, sid)["status"] == "complete_in_progress"


def test_processor_down_before_executing_leaves_the_session_payable(
        agent: Agent, processor: FakePaymentProcessor) -> None:
    sid = agent.ready_session()["id"]
    response = agent.complete(sid, "spt_unavailable")
    assert response.status_code == 503
    assert get(agent, sid)["status"] == "ready_for_payment"  # certainly not charged
    assert agent.complete(sid, "spt_fine").get_json()["status"] == "completed"
    assert len(processor.charges()) == 1


def test_unknown_outcome_blocks_new_charges_until_the_window_passes(
        app: Flask, agent: Agent, processor: FakePaymentProcessor) -> None:
    sid = agent.ready_session()["id"]
    assert agent.complete(sid, "spt_timeout").status_code == 503  # may or may not have charged
    assert get(agent, sid)["status"] == "complete_in_progress"
    # another token right away: the first outcome is not known yet, so no second charge
    response = agent.complete(sid, "spt_other")
    assert response.status_code == 503
    assert response.get_json()["code"] == "payment_outcome_pending"
    assert response.headers["Retry-After"]
    result = app.test_cli_runner().invoke(args=["acp", "sweep", "--stuck-after", "0"])
    assert result.exit_code == 0, result.output
    assert get(agent, sid)["status"] == "complete_in_progress"
    service = app.extensions["acp"].service
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=301)
    service.clock = lambda: later
    result = app.test_cli_runner().invoke(args=["acp", "sweep", "--stuck-after", "0"])
    assert "recovered=1" in result.output
    assert get(agent, sid)["status"] == "ready_for_payment"
    assert processor.charges() == []
    assert agent.complete(sid, "spt_fine").get_json()["status"] == "completed"
    assert len(processor.charges()) == 1


# --- processor outage -----------------------------------------------------------------


def test_processor_unavailable_is_not_stored(agent: Agent, processor: FakePaymentProcessor,
                                             ledger: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    key = str(uuid.uuid4())
    first = agent.complete(sid, "spt_unavailable", key=key)
    assert first.status_code == 503
    assert int(first.headers["Retry-After"]) >= 1
    assert ledger_rows(ledger) == []

    # Same key, same body: processed again (a 5xx is never stored for replay).
    second = agent.complete(sid, "spt_unavailable", key=key)
    assert second.status_code == 503
    assert "Idempotent-Replayed" not in second.headers
    assert ledger_rows(ledger) == []

    # The processor is back; the agent retries with a working token.
    done = agent.complete(sid, "spt_good")
    assert done.status_code == 200
    assert done.get_json()["status"] == "completed"
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == TOTAL
    assert len(orders(tmp_path, sid)) == 1


# --- crash between charge and order ---------------------------------------------------


def test_order_placement_failure_then_retry(agent: Agent, adapter: FlakyCatalogAdapter,
                                            processor: FakePaymentProcessor,
                                            tmp_path: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    adapter.place_order_failures = 1
    key = str(uuid.uuid4())
    response = agent.complete(sid, "spt_crash", key=key)
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert len(processor.charges()) == 1  # paid ...
    assert orders(tmp_path) == []  # ... but no order yet
    assert get(agent, sid)["status"] == "complete_in_progress"

    retry = agent.complete(sid, "spt_crash", key=key)
    assert retry.status_code == 200, retry.get_json()
    assert "Idempotent-Replayed" not in retry.headers
    done = retry.get_json()
    assert done["status"] == "completed"
    assert adapter.place_order_calls == 2
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(done) == TOTAL
    assert len(orders(tmp_path)) == 1

    # Replays of the successful response cost nothing more.
    replay = agent.complete(sid, "spt_crash", key=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json() == done
    assert len(processor.charges()) == 1
    assert adapter.place_order_calls == 2


def test_order_placement_failure_recovered_by_another_token(agent: Agent, adapter: FlakyCatalogAdapter,
                                                            processor: FakePaymentProcessor,
                                                            tmp_path: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    adapter.place_order_failures = 1
    assert agent.complete(sid, "spt_first").status_code == 503
    done = agent.complete(sid, "spt_second").get_json()
    assert done["status"] == "completed"
    assert len(processor.charges()) == 1
    assert len(orders(tmp_path)) == 1


def test_sweeper_places_the_order_after_a_crash(app: Flask, agent: Agent, adapter: FlakyCatalogAdapter,
                                                processor: FakePaymentProcessor,
                                                tmp_path: pathlib.Path) -> None:
    sid = agent.ready_session()["id"]
    adapter.place_order_failures = 1
    assert agent.complete(sid, "spt_crash").status_code == 503
    result = app.test_cli_runner().invoke(args=["acp", "sweep", "--stuck-after", "0"])
    assert "recovered=1" in result.output, result.output
    assert get(agent, sid)["status"] == "completed"
    assert len(processor.charges()) == 1
    assert len(orders(tmp_path)) == 1


# --- not ready, price change ----------------------------------------------------------


def test_complete_not_ready_session(agent: Agent, processor: FakePaymentProcessor,
                                    ledger: pathlib.Path) -> None:
    response = agent.create()  # no address
    sid = response.get_json()["id"]
    assert response.get_json()["status"] == "not_ready_for_payment"
    response = agent.complete(sid, "spt_123")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "not_ready_for_payment"
    assert "order" not in body
    assert any(m["type"] == "error" for m in body["messages"])
    assert ("error", "invalid") in messages(body)
    assert processor.charges() == []
    assert ledger_rows(ledger) == []
    # Once the address is there, the same token pays.
    assert agent.post(f"/checkout_sessions/{sid}",
                      {"fulfillment_details": {"address": ADDRESS}}).status_code == 200
    assert agent.complete(sid, "spt_123").get_json()["status"] == "completed"
    assert [c["amount"] for c in processor.charges()] == [TOTAL]


def test_price_change_before_charge(agent: Agent, adapter: FlakyCatalogAdapter,
                                    processor: FakePaymentProcessor, ledger: pathlib.Path) -> None:
    session = agent.ready_session()
    sid = session["id"]
    assert total_of(session) == TOTAL
    adapter.price_increase = 100  # $3.00 -> $4.00 between the quote and the charge

    response = agent.complete(sid, "spt_123")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready_for_payment"
    assert "order" not in body
    warnings = [m for m in body["messages"] if m["type"] == "warning"]
    assert [(m["code"], m.get("resolution")) for m in warnings] == [("price_change", "requires_buyer_review")]
    assert body["line_items"][0]["unit_amount"] == 400
    new_total = total_of(body)
    assert new_total == TOTAL + 100  # the injected quote raises the price, not the tax
    assert processor.charges() == []
    assert ledger_rows(ledger) == []

    # The agent saw the new price; completing again charges exactly it.
    done = agent.complete(sid, "spt_123")
    assert done.status_code == 200
    assert done.get_json()["status"] == "completed"
    assert [c["amount"] for c in processor.charges()] == [new_total]
