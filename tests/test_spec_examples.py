"""The spec's own request examples (ACP 2026-04-17), replayed against the app.

Every request example a merchant receives is sent, unmodified, in a realistic
sequence to an app whose catalog matches the examples (``tests/data``:
``item_123`` at $3.00, shipping ``fulfillment_option_123`` $1.00 and
``fulfillment_option_456`` $5.00, 10 % tax in US-CA). The validating client
checks every response against the official schema; the tests check meaning.
The examples' own payloads are validated first, so that a harness problem is
not mistaken for an app problem.
"""

from __future__ import annotations

import copy
import json
import pathlib
import sqlite3
import typing as t
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_acp.testing import FakePaymentProcessor
from tests.conftest import DATA
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import SPEC_DIR
from tests.spec import VERSION
from tests.spec import examples
from tests.spec import require_spec
from tests.spec import validate

#: request examples a merchant receives -> the schema definition they follow.
REQUEST_EXAMPLES = {
    "create_checkout_session_request": "CheckoutSessionCreateRequest",
    "create_checkout_session_request_with_first_touch_attribution": "CheckoutSessionCreateRequest",
    "update_checkout_session_request": "CheckoutSessionUpdateRequest",
    "complete_checkout_session_request": "CheckoutSessionCompleteRequest",
    "complete_checkout_session_request_seller_backed": "CheckoutSessionCompleteRequest",
    "complete_checkout_session_request_with_last_touch_attribution": "CheckoutSessionCompleteRequest",
    "cancel_checkout_session_request": "CancelSessionRequest",
    "cancel_checkout_session_request_timing_deferred": "CancelSessionRequest",
}

#: response examples that should be valid -> their definition.
RESPONSE_EXAMPLES = {
    "create_checkout_session_response": "CheckoutSession",
    "update_checkout_session_response": "CheckoutSession",
    "get_checkout_session_response": "CheckoutSession",
    "complete_checkout_session_response": "CheckoutSessionWithOrder",
    "cancel_checkout_session_response": "CheckoutSession",
    "checkout_session_with_out_of_stock": "CheckoutSession",
    "checkout_session_with_payment_declined": "CheckoutSession",
    "checkout_session_authentication_required": "CheckoutSession",
    "discovery_response_full": "DiscoveryResponse",
    "discovery_response_minimal": "DiscoveryResponse",
    "error_400_invalid_item": "Error",
    "error_400_requires_3ds": "Error",
    "error_400_idempotency_key_required": "Error",
    "error_409_idempotency_in_flight": "Error",
    "error_422_idempotency_conflict": "Error",
}


def multi_item_examples() -> dict[str, t.Any]:
    path = require_spec() / VERSION / "examples" / "examples.multi_item_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


def example(name: str) -> dict[str, t.Any]:
    """A deep copy of a checkout example (so no test can alter the cached one)."""
    return copy.deepcopy(examples()[name])


def totals(body: dict[str, t.Any]) -> dict[str, int]:
    return {entry["type"]: entry["amount"] for entry in body["totals"]}


def ledger_rows(path: pathlib.Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT idempotency_key, result FROM fake_charges").fetchall()


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def processor(ledger: pathlib.Path) -> FakePaymentProcessor:
    return FakePaymentProcessor(str(ledger))


@pytest.fixture
def app(tmp_path: pathlib.Path, processor: FakePaymentProcessor) -> Flask:
    return build_app(tmp_path, payment_processor=processor)


@pytest.fixture
def agent(app: Flask) -> Agent:
    return Agent(app.test_client())


# --- the harness: the examples themselves ---------------------------------------------


@pytest.mark.parametrize(("name", "definition"), sorted(REQUEST_EXAMPLES.items()))
def test_request_example_is_valid(name: str, definition: str) -> None:
    validate(examples()[name], definition)


@pytest.mark.parametrize(("name", "definition"), sorted(RESPONSE_EXAMPLES.items()))
def test_response_example_is_valid(name: str, definition: str) -> None:
    validate(examples()[name], definition)


def test_validator_rejects_what_the_schema_rejects() -> None:
    """The harness is not vacuous: an extra property and a missing required
    property are both caught."""
    body = example("create_checkout_session_response")
    body["order_notes"] = "not a CheckoutSession field"
    with pytest.raises(AssertionError, match="order_notes"):
        validate(body, "CheckoutSession")
    body = example("complete_checkout_session_response")
    del body["order"]
    with pytest.raises(AssertionError, match="order"):
        validate(body, "CheckoutSessionWithOrder")


def test_multi_item_example_request_lacks_capabilities() -> None:
    """Upstream defect: the multi-item create request omits ``capabilities``,
    which the 2026-04-17 schema requires (its response omits them too)."""
    data = multi_item_examples()
    assert "capabilities" not in data["create_multi_item_checkout_request"]
    with pytest.raises(AssertionError, match="capabilities"):
        validate(data["create_multi_item_checkout_request"], "CheckoutSessionCreateRequest")
    fixed = {**data["create_multi_item_checkout_request"], "capabilities": {}}
    validate(fixed, "CheckoutSessionCreateRequest")


def test_spec_dir_is_read_in_place() -> None:
    assert (SPEC_DIR / VERSION / "examples" / "examples.agentic_checkout.json").is_file()
    assert not list(pathlib.Path(__file__).parent.rglob("examples.agentic_checkout.json"))


# --- create -> update -> complete ------------------------------------------------------


def test_create_update_complete(agent: Agent, processor: FakePaymentProcessor) -> None:
    create = example("create_checkout_session_request")
    response = agent.post("/checkout_sessions", create)
    assert response.status_code == 201
    session = response.get_json()
    sid = session["id"]
    assert session["status"] == "ready_for_payment", session["messages"]
    assert session["currency"] == "usd"
    assert [li["item"]["id"] for li in session["line_items"]] == ["item_123"]
    assert session["line_items"][0]["quantity"] == 1
    assert session["line_items"][0]["unit_amount"] == 300
    assert session["fulfillment_details"] == create["fulfillment_details"]
    assert {o["id"] for o in session["fulfillment_options"]} == {
        "fulfillment_option_123", "fulfillment_option_456"}
    # The cheapest option is applied at once, as in the spec's create response.
    expected = example("create_checkout_session_response")
    assert session["selected_fulfillment_options"] == expected["selected_fulfillment_options"]
    # Same amounts as the spec's create response, except its illustrative $0.50 fee.
    want = {k: v for k, v in totals(expected).items() if k != "fee"}
    want["total"] -= totals(expected)["fee"]
    assert totals(session) == want == {"items_base_amount": 300, "subtotal": 300, "tax": 30,
                                       "fulfillment": 100, "total": 430}
    assert session["messages"] == []

    update = example("update_checkout_session_request")
    response = agent.post(f"/checkout_sessions/{sid}", update)
    assert response.status_code == 200
    session = response.get_json()
    assert session["status"] == "ready_for_payment", session["messages"]
    assert session["selected_fulfillment_options"] == [
        {"type": "shipping", "option_id": "fulfillment_option_456", "item_ids": ["item_123"]}]
    assert totals(session)["fulfillment"] == 500
    assert totals(session) == totals(example("update_checkout_session_response"))
    assert session["fulfillment_details"] == create["fulfillment_details"]  # kept

    fetched = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert fetched.status_code == 200
    assert fetched.get_json()["selected_fulfillment_options"] == session["selected_fulfillment_options"]
    assert totals(fetched.get_json()) == totals(session)

    complete = example("complete_checkout_session_request")
    response = agent.post(f"/checkout_sessions/{sid}/complete", complete)
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "completed"
    assert done["order"]["checkout_session_id"] == sid
    assert done["order"]["id"].startswith("ord_")
    assert done["order"]["permalink_url"].endswith(done["order"]["id"])
    assert done["order"]["order_number"] == "#1001"
    assert done["buyer"] == complete["buyer"]
    assert totals(done) == totals(example("complete_checkout_session_response"))
    assert done["messages"] == []
    charges = processor.charges()
    assert len(charges) == 1
    assert charges[0]["amount"] == totals(done)["total"] == 830
    assert charges[0]["currency"] == "usd"

    # The completed session reads back the same, and is terminal.
    fetched = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert fetched.get_json()["status"] == "completed"
    assert fetched.get_json()["order"] == done["order"]
    again = agent.post(f"/checkout_sessions/{sid}/complete", complete)
    assert again.status_code == 405
    assert len(processor.charges()) == 1


def test_same_example_same_key_is_replayed(agent: Agent, processor: FakePaymentProcessor) -> None:
    create = example("create_checkout_session_request")
    key = str(uuid.uuid4())
    first = agent.post("/checkout_sessions", create, key=key)
    second = agent.post("/checkout_sessions", create, key=key)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json()["id"] == first.get_json()["id"]
    sid = first.get_json()["id"]
    complete = example("complete_checkout_session_request")
    key = str(uuid.uuid4())
    done = agent.post(f"/checkout_sessions/{sid}/complete", complete, key=key)
    replay = agent.post(f"/checkout_sessions/{sid}/complete", complete, key=key)
    assert done.status_code == replay.status_code == 200
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json() == done.get_json()
    assert len(processor.charges()) == 1


def test_first_touch_create_then_last_touch_complete(agent: Agent,
                                                     processor: FakePaymentProcessor) -> None:
    """The attribution examples: the first-touch create has no address, so the
    session waits for one; the update supplies it; the last-touch complete pays."""
    response = agent.post("/checkout_sessions",
                          example("create_checkout_session_request_with_first_touch_attribution"))
    assert response.status_code == 201
    session = response.get_json()
    sid = session["id"]
    assert session["status"] == "not_ready_for_payment"
    assert [(m["type"], m.get("code"), m.get("param")) for m in session["messages"]] == [
        ("error", "missing", "$.fulfillment_details.address")]
    assert "affiliate_attribution" not in session  # accepted, not echoed (not a session field)

    # Completing now is refused softly: still not ready, nothing charged.
    early = agent.post(f"/checkout_sessions/{sid}/complete",
                       example("complete_checkout_session_request_with_last_touch_attribution"))
    assert early.status_code == 200
    assert early.get_json()["status"] == "not_ready_for_payment"
    assert processor.charges() == []

    details = example("create_checkout_session_request")["fulfillment_details"]
    response = agent.post(f"/checkout_sessions/{sid}", {"fulfillment_details": details})
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready_for_payment"
    response = agent.post(f"/checkout_sessions/{sid}", example("update_checkout_session_request"))
    assert response.status_code == 200
    session = response.get_json()
    assert session["selected_fulfillment_options"][0]["option_id"] == "fulfillment_option_456"
    assert totals(session)["total"] == 830

    response = agent.post(f"/checkout_sessions/{sid}/complete",
                          example("complete_checkout_session_request_with_last_touch_attribution"))
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "completed"
    assert done["order"]["checkout_session_id"] == sid
    assert [c["amount"] for c in processor.charges()] == [830]


def test_seller_backed_handler_is_refused(agent: Agent, processor: FakePaymentProcessor,
                                          ledger: pathlib.Path) -> None:
    response = agent.post("/checkout_sessions", example("create_checkout_session_request"))
    sid = response.get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}/complete",
                          example("complete_checkout_session_request_seller_backed"))
    assert response.status_code == 400
    error = response.get_json()
    assert error["type"] == "invalid_request"
    assert error["param"] == "$.payment_data.handler_id"
    assert "seller_pm_123" in error["message"]
    assert processor.charges() == []
    assert ledger_rows(ledger) == []
    session = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).get_json()
    assert session["status"] == "ready_for_payment"
    # The session is still payable with the handler we do offer.
    done = agent.post(f"/checkout_sessions/{sid}/complete", example("complete_checkout_session_request"))
    assert done.get_json()["status"] == "completed"


# --- create -> cancel ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cancel_checkout_session_request",
                                  "cancel_checkout_session_request_timing_deferred"])
def test_create_then_cancel(agent: Agent, processor: FakePaymentProcessor, name: str) -> None:
    response = agent.post("/checkout_sessions", example("create_checkout_session_request"))
    sid = response.get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}", example("update_checkout_session_request"))
    assert response.status_code == 200
    response = agent.post(f"/checkout_sessions/{sid}/cancel", example(name))
    assert response.status_code == 200
    session = response.get_json()
    assert session["status"] == "canceled"
    assert session["id"] == sid
    assert "intent_trace" not in json.dumps(session)  # write-only
    assert example(name)["intent_trace"]["trace_summary"] not in json.dumps(session)
    # Canceled is terminal: update, complete and cancel are 405; nothing charged.
    for path, body in ((f"/checkout_sessions/{sid}", example("update_checkout_session_request")),
                       (f"/checkout_sessions/{sid}/complete", example("complete_checkout_session_request")),
                       (f"/checkout_sessions/{sid}/cancel", example(name))):
        assert agent.post(path, body).status_code == 405
    assert processor.charges() == []
    fetched = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert fetched.get_json()["status"] == "canceled"


def test_cancel_releases_the_stock(tmp_path: pathlib.Path) -> None:
    """Canceling with the example body frees the held unit for another buyer."""
    app = build_app(tmp_path)
    agent = Agent(app.test_client())
    body = example("create_checkout_session_request")
    body["line_items"] = [{"id": "last_unit"}]
    first = agent.post("/checkout_sessions", body).get_json()
    assert first["status"] == "ready_for_payment"
    second = agent.post("/checkout_sessions", body).get_json()
    assert second["status"] == "not_ready_for_payment"
    assert agent.post(f"/checkout_sessions/{first['id']}/cancel",
                      example("cancel_checkout_session_request")).status_code == 200
    third = agent.post("/checkout_sessions", body).get_json()
    assert third["status"] == "ready_for_payment"


# --- examples.multi_item_checkout.json -------------------------------------------------


@pytest.fixture
def multi_app(tmp_path: pathlib.Path, processor: FakePaymentProcessor) -> Flask:
    """The catalog of the multi-item example: item_123 $3.00, item_456 a $5.00
    belt, one US method ``fulfillment_option_combined`` at $1.50, 10 % CA tax."""
    return build_app(tmp_path, payment_processor=processor,
                     ACP_CATALOG_FILE=str(DATA / "multi_item_feed.json"),
                     ACP_STORE_FILE=str(DATA / "multi_item_store.json"))


def test_multi_item_example(multi_app: Flask, processor: FakePaymentProcessor) -> None:
    client: FlaskClient = multi_app.test_client()
    agent = Agent(client)
    data = multi_item_examples()
    request = copy.deepcopy(data["create_multi_item_checkout_request"])
    expected = data["create_multi_item_checkout_response"]

    # As published the request misses the required capabilities: 400, named.
    response = agent.post("/checkout_sessions", request)
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.capabilities"

    request["capabilities"] = {}
    response = agent.post("/checkout_sessions", request)
    assert response.status_code == 201
    session = response.get_json()
    assert session["status"] == "ready_for_payment", session["messages"]
    lines = {li["item"]["id"]: li for li in session["line_items"]}
    assert list(lines) == ["item_123", "item_456"]
    for want in expected["line_items"]:
        got = lines[want["item"]["id"]]
        assert got["unit_amount"] == want["unit_amount"] == want["item"]["unit_amount"]
        assert got["name"] == want["name"]
        assert got["description"] == want["description"]
        assert got["quantity"] == 1  # the request sends no quantity (the example's 2 is stale)
    assert session["fulfillment_details"] == request["fulfillment_details"]
    assert [(s["option_id"], sorted(s["item_ids"])) for s in session["selected_fulfillment_options"]] == [
        (s["option_id"], sorted(s["item_ids"])) for s in expected["selected_fulfillment_options"]]
    assert totals(session)["fulfillment"] == totals(expected)["fulfillment"] == 150
    assert totals(session) == {"items_base_amount": 800, "subtotal": 800, "fulfillment": 150,
                               "tax": 80, "total": 1030}

    sid = session["id"]
    response = agent.post(f"/checkout_sessions/{sid}/complete", example("complete_checkout_session_request"))
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "completed"
    assert done["order"]["permalink_url"].startswith("https://www.testshop.com/orders/")
    assert [c["amount"] for c in processor.charges()] == [1030]
