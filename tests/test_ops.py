"""Operations: health probes, Prometheus metrics, read-only CLI views (issue 16)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import typing as t

import pytest
import requests
from click.testing import CliRunner
from flask.cli import ScriptInfo
from prometheus_client.parser import text_string_to_metric_families

from flask_acp.testing import FakePaymentProcessor

from .conftest import ADDRESS
from .conftest import AGENT_KEY
from .conftest import OTHER_KEY
from .conftest import Agent
from .conftest import build_app
from .conftest import serve_app


class _UnreachableProcessor(FakePaymentProcessor):
    """A processor whose readiness hook cannot reach it."""

    def ready(self) -> None:
        raise ConnectionError("connect to api.psp.example:443 refused (secret sk_live_x)")


def test_healthz_and_readyz_over_http(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    with serve_app(app) as base:
        live = requests.get(f"{base}/healthz", timeout=5)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        assert live.headers["Content-Type"] == "application/json"
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready",
                                "checks": {"store": "ok", "queue": "skipped", "processor": "skipped"}}
        assert ready.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("prefix", ["", "/acp"])
def test_a_wrong_method_on_the_probes_and_metrics_is_json(tmp_path: pathlib.Path, prefix: str) -> None:
    client = build_app(tmp_path, ACP_URL_PREFIX=prefix, ACP_METRICS_ENABLED=True).test_client()
    for path in ("/healthz", "/readyz", "/metrics"):
        response = client.post(path, data=b"{}")
        assert response.status_code == 405, path
        assert response.mimetype == "application/json", (path, response.data[:80])
        assert response.get_json()["code"] == "method_not_allowed"


def test_readyz_names_the_dependency_that_is_down_and_nothing_else(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, payment_processor=_UnreachableProcessor())
    with serve_app(app) as base:
        ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert ready.json() == {"status": "unavailable",
                            "checks": {"store": "ok", "queue": "skipped", "processor": "down"}}
    assert "psp.example" not in ready.text
    assert "sk_live" not in ready.text


def test_readyz_store_and_queue_down(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_REDIS_URL="redis://127.0.0.1:1/0", ACP_READYZ_TIMEOUT=1.0)
    app.extensions["acp"].storage.sessions.get = _refuse  # the store's file became unreadable
    with serve_app(app) as base:
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": "down", "queue": "down", "processor": "skipped"}
    assert "127.0.0.1:1" not in ready.text


def _refuse(*args: t.Any, **kwargs: t.Any) -> t.Any:
    raise OSError("disk I/O error at /var/lib/acp/acp.sqlite3")


def test_probes_can_move_or_be_disabled(tmp_path: pathlib.Path) -> None:
    moved = build_app(tmp_path / "a", ACP_HEALTHZ_PATH="/ops/live", ACP_READYZ_PATH="/ops/ready")
    client = moved.test_client()
    assert client.get("/ops/live").json == {"status": "ok"}
    assert client.get("/ops/ready").status_code == 200
    assert client.get("/healthz").status_code == 404
    off = build_app(tmp_path / "b", ACP_HEALTH_ENABLED=False)
    assert off.test_client().get("/healthz").status_code == 404
    assert off.test_client().get("/readyz").status_code == 404


# --- metrics -----------------------------------------------------------------------------------


def _scrape(base: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{base}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def _value(samples: t.Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_purchase_a_decline_a_replay_and_a_refund(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_METRICS_ENABLED=True,
                    ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY],
                                              "webhook_url": "https://agent.example/hooks",
                                              "webhook_secrets": ["whsec_" + "x" * 32]}},
                    ACP_WEBHOOK_DELIVERY_THREAD=False)
    agent = Agent(app.test_client())
    with serve_app(app) as base:
        before = _scrape(base)
        assert _value(before, "acp_outbox_pending_events") == 0
        sold = agent.ready_session()
        assert agent.complete(sold["id"], key="k-buy").status_code == 200
        replayed = agent.complete(sold["id"], key="k-buy")
        assert replayed.headers["Idempotent-Replayed"] == "true"
        refused = agent.ready_session()
        assert agent.complete(refused["id"], "spt_decline_1").get_json()["status"] != "completed"
        conflict = agent.complete(sold["id"], "spt_another", key="k-buy")
        assert conflict.status_code in (409, 422)
        after = _scrape(base)
        order_total = next(x["amount"] for x in agent.client.get(
            f"/checkout_sessions/{sold['id']}", headers=agent.headers()).get_json()["totals"]
            if x["type"] == "total")
        result = CliRunner().invoke(app.cli, ["acp", "orders", "refund", _order_id(app, sold["id"]),
                                              "--amount", "100"], obj=ScriptInfo(create_app=lambda: app))
        assert result.exit_code == 0, result.output
        refunded = _scrape(base)

    def grew(name: str, by: float, samples: t.Any = after, since: t.Any = before, **labels: str) -> None:
        assert _value(samples, name, **labels) - _value(since, name, **labels) == by, (name, labels)

    # the purchase, its replay and the decline (a 200: the session stays payable with a message)
    grew("acp_requests_total", 3, operation="complete", version="2026-04-17", status="200")
    grew("acp_idempotent_replays_total", 1, operation="complete")
    grew("acp_idempotency_conflicts_total", 1, operation="complete")
    grew("acp_charges_total", 1, currency="usd")
    grew("acp_charged_minor_units_total", order_total, currency="usd")
    grew("acp_payment_declines_total", 1, currency="usd", reason="declined")
    grew("acp_refunds_total", 1, samples=refunded, since=after, currency="usd", status="succeeded")
    grew("acp_refunded_minor_units_total", 100, samples=refunded, since=after, currency="usd")
    assert _value(after, "acp_request_duration_seconds_count", operation="complete") == 4
    assert _value(after, "acp_processor_call_duration_seconds_count", call="charge") == 2
    assert _value(after, "acp_platform_call_duration_seconds_count", call="place_order") == 1
    assert _value(after, "acp_outbox_pending_events") == 1  # the order_create event, undelivered
    assert _value(after, "acp_outbox_oldest_pending_age_seconds") >= 0


_find_spec = importlib.util.find_spec


def _order_id(app: t.Any, session_id: str) -> str:
    session = app.extensions["acp"].storage.sessions.get(session_id)
    return t.cast(str, session.order.id)


def test_metrics_are_off_by_default_and_can_require_a_token(tmp_path: pathlib.Path) -> None:
    assert build_app(tmp_path / "a").test_client().get("/metrics").status_code == 404
    app = build_app(tmp_path / "b", ACP_METRICS_ENABLED=True, ACP_METRICS_TOKEN="scrape-secret",
                    ACP_METRICS_PATH="/ops/metrics")
    with serve_app(app) as base:
        refused = requests.get(f"{base}/ops/metrics", timeout=5)
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
        allowed = requests.get(f"{base}/ops/metrics", headers={"Authorization": "Bearer scrape-secret"},
                               timeout=5)
        assert allowed.status_code == 200
        assert "acp_outbox_pending_events 0.0" in allowed.text


def test_metrics_without_prometheus_client_is_one_clear_error(tmp_path: pathlib.Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prometheus_client"
                        else _find_spec(name, *a))
    with pytest.raises(RuntimeError, match=r"ACP_METRICS_ENABLED: .*pip install 'flask-acp\[metrics\]'"):
        build_app(tmp_path, ACP_METRICS_ENABLED=True)


# --- read-only CLI views -------------------------------------------------------------------------


def _cli(app: t.Any, *args: str) -> str:
    result = CliRunner().invoke(app.cli, ["acp", *args], obj=ScriptInfo(create_app=lambda: app))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_views_newest_first_filtered_masked(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    agent = Agent(app.test_client())
    first = agent.ready_session()
    assert agent.complete(first["id"]).status_code == 200
    email = "jane.doe@example.com"
    second = agent.ready_session([{"id": "item_123", "quantity": 2}])
    assert agent.post(f"/checkout_sessions/{second['id']}", {"buyer": {
        "first_name": "Jane", "last_name": "Doe", "email": email}}).status_code == 200
    other = Agent(app.test_client(), OTHER_KEY).create().get_json()

    rows = [json.loads(line) for line in _cli(app, "sessions", "list", "--json").splitlines()]
    assert [r["id"] for r in rows] == [other["id"], second["id"], first["id"]]
    assert rows[1]["buyer_email"] == "j***@example.com"
    assert [r["id"] for r in map(json.loads, _cli(app, "sessions", "list", "--json", "--status",
                                                  "completed").splitlines())] == [first["id"]]
    assert [r["id"] for r in map(json.loads, _cli(app, "sessions", "list", "--json", "--agent", "agent-two",
                                                  ).splitlines())] == [other["id"]]
    assert len(_cli(app, "sessions", "list", "--limit", "1").splitlines()) == 2  # header + 1
    shown = _cli(app, "sessions", "show", second["id"])
    assert json.loads(shown)["line_items"] == [{"id": "item_123", "quantity": 2}]
    assert email not in shown
    assert ADDRESS["line_one"] not in shown
    assert json.loads(shown)["ship_to_country"] == ADDRESS["country"]
    missing = CliRunner().invoke(app.cli, ["acp", "sessions", "show", "cs_nope"],
                                 obj=ScriptInfo(create_app=lambda: app))
    assert missing.exit_code != 0
    assert "no checkout session" in missing.output

    orders = [json.loads(line) for line in _cli(app, "orders", "list", "--json").splitlines()]
    assert [o["checkout_session_id"] for o in orders] == [first["id"]]
    assert orders[0]["total"] > 0
    assert orders[0]["currency"] == "usd"
    assert _cli(app, "orders", "list", "--json", "--status", "shipped") == ""
    table = _cli(app, "orders", "list").splitlines()
    assert table[0].split("\t")[:3] == ["order_id", "status", "total"]

    stock = {r["item_id"]: r for r in map(json.loads, _cli(app, "stock", "--json").splitlines())}
    item = stock["item_123"]
    assert item["sold"] == 1
    assert item["held"] >= 2  # the open session's hold
    assert item["on_hand"] == 100
    assert item["available"] == 100 - item["sold"] - item["held"]
    assert list(map(json.loads, _cli(app, "stock", "--json", "--item", "item_123").splitlines())) == [item]
