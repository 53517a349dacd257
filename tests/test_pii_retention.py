"""``flask acp sweep`` erases the personal data of closed sessions after
``ACP_PII_RETENTION`` (README "Personal data"), and the stored idempotent
responses that carry it; the order, the money and the webhooks still work."""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import pathlib
import typing as t
import uuid

import pytest
from flask import Flask

from flask_acp.models import Status
from flask_acp.testing import acp_headers
from flask_acp.versions import VERSIONS
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import Agent
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix
from tests.test_webhooks import MakeApp
from tests.test_webhooks import Receiver
from tests.test_webhooks import app_factory
from tests.test_webhooks import check_event

DAY = 86400
BUYER = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
         "phone_number": "+15551234567"}
DETAILS = {"name": "Ada Lovelace", "phone_number": "+15551234567", "email": "ada@example.com",
           "address": ADDRESS}


@pytest.fixture
def hooks() -> cabc.Iterator[Receiver]:
    """The agent's webhook endpoint."""
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture(params=["sqlite", "redis"])
def make_app(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> cabc.Iterator[MakeApp]:
    """Apps on a SQLite or a Redis store (webhooks attempted by hand)."""
    factory = app_factory(tmp_path)
    make = next(factory)
    extra: dict[str, t.Any] = {"ACP_WEBHOOK_DELIVERY_THREAD": False}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_single")
        extra.update(ACP_STORE_URL=f"{server.url}?key_prefix={unique_prefix()}", ACP_REDIS_URL="")

    def made(url: str | None, **config: t.Any) -> Flask:
        return make(url, **{**extra, **config})

    yield made
    next(factory, None)


def get(agent: Agent, sid: str) -> dict[str, t.Any]:
    response = agent.client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert response.status_code == 200, response.get_json()  # schema-validated by the client
    return t.cast(dict[str, t.Any], response.get_json())


def later(app: Flask, days: float) -> dt.datetime:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    app.extensions["acp"].service.clock = lambda: when
    return when


def sweep(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["acp", "sweep"])
    assert result.exit_code == 0, result.output
    return t.cast(str, result.output)


def test_sweep_erases_personal_data_of_old_closed_sessions(make_app: MakeApp, hooks: Receiver) -> None:
    receiver = hooks
    app = make_app(receiver.url)
    state = app.extensions["acp"]
    agent = Agent(app.test_client())
    fields = {"buyer": BUYER, "fulfillment_details": DETAILS, "order_notes": "ring twice"}
    key = str(uuid.uuid4())
    paid = agent.post("/checkout_sessions", {"currency": "usd", "line_items": [{"id": "item_123"}],
                                             "capabilities": {}, **fields}, key=key).get_json()
    done = agent.complete(paid["id"]).get_json()
    assert done["status"] == "completed"
    canceled = agent.create(**fields).get_json()
    assert agent.post(f"/checkout_sessions/{canceled['id']}/cancel", {}).status_code == 200
    open_ = agent.create(**fields).get_json()
    [event] = state.storage.outbox.entries(statuses=("pending",))  # the order_create, not sent yet

    later(app, 29)
    output = sweep(app)
    assert "erased_personal_data=0" in output  # within the retention (30 days by default)
    assert "expired=1" in output  # the open session: closed now, erased 30 days from now
    assert get(agent, paid["id"])["buyer"]["email"] == "ada@example.com"

    later(app, 31)
    assert "erased_personal_data=2" in sweep(app)
    for sid in (paid["id"], canceled["id"]):
        body = get(agent, sid)
        assert "buyer" not in body
        assert "fulfillment_details" not in body
        assert "ada@example.com" not in json.dumps(body)
        assert "Main St" not in json.dumps(body)
        stored = state.storage.sessions.get(sid)
        assert stored is not None
        assert stored.order_notes is None
        assert stored.personal_data_erased_at is not None
    for version in VERSIONS:  # every served version renders it valid (the client validates)
        response = agent.client.get(f"/checkout_sessions/{paid['id']}",
                                    headers=acp_headers(AGENT_KEY, version=version))
        assert response.status_code == 200, (version, response.get_json())
        assert "ada@example.com" not in response.get_data(as_text=True)
    erased = get(agent, paid["id"])
    assert erased["status"] == "completed"
    assert erased["order"]["id"] == done["order"]["id"]
    assert erased["totals"] == done["totals"]
    assert get(agent, open_["id"])["buyer"]["email"] == "ada@example.com"
    assert state.storage.sessions.get(open_["id"]).status is Status.EXPIRED  # type: ignore[union-attr]

    # the order's webhook, still pending, is delivered as it would have been
    outcome = state.webhooks.deliver(event.event_id)
    assert outcome.result == "delivered"
    assert check_event(receiver.delivered[0], "order_create")["data"]["id"] == done["order"]["id"]
    # the order can still change (a shipment), and says so to the agent
    state.orders.ship(done["order"]["id"], carrier="USPS", tracking_number="9400")
    [update] = state.storage.outbox.entries(statuses=("pending",))
    assert state.webhooks.deliver(update.event_id).result == "delivered"
    shipped = check_event(receiver.delivered[1], "order_update")["data"]
    assert shipped["fulfillments"][0]["tracking_number"] == "9400"
    assert "buyer" not in get(agent, paid["id"])
    # idempotent
    assert "erased_personal_data=0" in sweep(app)

    # the create's stored response (the buyer's details in it) is gone: the key is new again
    again = agent.post("/checkout_sessions", {"currency": "usd", "line_items": [{"id": "item_123"}],
                                              "capabilities": {}, **fields}, key=key)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") is None
    assert again.get_json()["id"] != paid["id"]


def test_no_copy_of_erased_data_is_left_in_the_sqlite_files(tmp_path: pathlib.Path) -> None:
    """SQLite keeps old page contents in free pages and in the ``-wal`` file:
    the store zeroes deleted content (``secure_delete``) and checkpoints the
    log after an erasure, so the bytes on disk no longer hold the buyer."""
    make = next(app_factory(tmp_path))
    app = make(None, ACP_WEBHOOK_DELIVERY_THREAD=False)
    agent = Agent(app.test_client())
    fields = {"buyer": {**BUYER, "last_name": "Quibbleworth"},
              "fulfillment_details": {**DETAILS, "name": "Zebulon Quibbleworth"}}
    paid = agent.create(**fields).get_json()
    assert agent.complete(paid["id"]).get_json()["status"] == "completed"
    files = [f for f in tmp_path.rglob("*.sqlite3*") if f.is_file()]
    assert any(b"Quibbleworth" in f.read_bytes() for f in files)
    later(app, 31)
    assert "erased_personal_data=1" in sweep(app)
    files = [f for f in tmp_path.rglob("*.sqlite3*") if f.is_file()]
    assert [f.name for f in files if b"Quibbleworth" in f.read_bytes()] == []


def test_stored_responses_outlive_a_longer_idempotency_ttl_only_until_the_retention(
        make_app: MakeApp) -> None:
    app = make_app(None, ACP_IDEMPOTENCY_TTL=90 * DAY, ACP_PII_RETENTION=2 * DAY)
    agent = Agent(app.test_client())
    key = str(uuid.uuid4())
    body = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}, "buyer": BUYER}
    first = agent.post("/checkout_sessions", body, key=key).get_json()
    later(app, 1)
    sweep(app)
    assert agent.post("/checkout_sessions", body, key=key).get_json()["id"] == first["id"]  # replayed
    later(app, 3)
    assert "purged_idempotency=1" in sweep(app)
    assert agent.post("/checkout_sessions", body, key=key).get_json()["id"] != first["id"]


def test_a_retention_of_0_keeps_everything(make_app: MakeApp) -> None:
    app = make_app(None, ACP_PII_RETENTION=0)
    agent = Agent(app.test_client())
    session = agent.create(buyer=BUYER, fulfillment_details=DETAILS).get_json()
    assert agent.post(f"/checkout_sessions/{session['id']}/cancel", {}).status_code == 200
    later(app, 3650)
    assert "erased_personal_data=0" in sweep(app)
    assert get(agent, session["id"])["buyer"]["email"] == "ada@example.com"


def test_a_retention_below_the_spec_s_24_hours_is_refused(tmp_path: pathlib.Path) -> None:
    factory = app_factory(tmp_path)
    make = next(factory)
    with pytest.raises(RuntimeError, match="ACP_PII_RETENTION"):
        make(None, ACP_PII_RETENTION=3600)
