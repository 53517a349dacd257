"""``flask acp demo-purchase`` end to end: the example app (built as
``example_app.py`` builds it, paying through a fake Stripe) served over real
HTTP on a loopback port, and the command buying from it as an agent would.
"""

from __future__ import annotations

import collections.abc as cabc
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest
from flask import Flask

from flask_acp.payments.stripe import StripePaymentProcessor
from flask_acp.testing.fake_stripe import FakeStripe
from tests.conftest import serve_app
from tests.spec import validate_response

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server
    assert server.server_errors == []


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
            fake: FakeStripe) -> types.ModuleType:
    """``example_app`` imported in demo mode (no Stripe key), its fake Stripe
    being ours: ``ensure_fake_stripe`` finds it answering on FAKE_STRIPE_PORT."""
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.delenv("ACP_API_KEYS", raising=False)
    monkeypatch.setenv("FAKE_STRIPE_PORT", fake.url.rsplit(":", 1)[1])
    monkeypatch.setenv("ACP_SQLITE_PATH", str(tmp_path / "server.sqlite3"))
    monkeypatch.syspath_prepend(str(ROOT))
    import example_app

    return example_app


@pytest.fixture
def demo_app(example: types.ModuleType, fake: FakeStripe) -> cabc.Iterator[Flask]:
    app: Flask = example.create_app({"ACP_WEBHOOK_DELIVERY_THREAD": False})
    payments = app.extensions["acp"].payments
    assert isinstance(payments, StripePaymentProcessor)
    assert app.config["ACP_STRIPE_API_BASE"] == fake.url  # no other fake Stripe was started
    yield app
    app.extensions["acp"].webhooks.close()


def _last_json_line(output: str) -> dict[str, object]:
    lines = [line for line in output.splitlines() if line.strip()]
    body = json.loads(lines[-1])
    assert isinstance(body, dict)
    return body


def test_demo_purchase_buys_from_a_running_server(demo_app: Flask, example: types.ModuleType,
                                                  fake: FakeStripe) -> None:
    with serve_app(demo_app) as url:
        result = demo_app.test_cli_runner().invoke(args=[
            "acp", "demo-purchase", "--base-url", url, "--api-key", example.DEMO_KEY])
    assert result.exit_code == 0, result.output
    session = _last_json_line(result.output)
    validate_response(f"/checkout_sessions/{session['id']}/complete", 200, session)
    assert session["status"] == "completed"
    order = session["order"]
    assert isinstance(order, dict)
    assert order["checkout_session_id"] == session["id"]
    assert f"order {order['id']}" in result.output
    total = next(x["amount"] for x in session["totals"] if x["type"] == "total")  # type: ignore[attr-defined]
    [pi] = fake.payment_intents.values()
    assert (pi["status"], pi["amount"]) == ("succeeded", total)
    assert pi["metadata"]["acp_checkout_session_id"] == session["id"]
    assert fake.charges_count() == 1
    # the order is the server's
    assert demo_app.extensions["acp"].orders.get(order["id"]).total == total


def test_demo_purchase_with_a_declined_card_fails(demo_app: Flask, example: types.ModuleType,
                                                  fake: FakeStripe) -> None:
    with serve_app(demo_app) as url:
        result = demo_app.test_cli_runner().invoke(args=[
            "acp", "demo-purchase", "--base-url", url, "--api-key", example.DEMO_KEY,
            "--payment-method", "pm_card_chargeDeclined"])
    assert result.exit_code == 1, result.output
    assert "payment_declined" in result.output
    assert fake.charges_count() == 0


def test_demo_purchase_with_a_wrong_key_fails(demo_app: Flask) -> None:
    with serve_app(demo_app) as url:
        result = demo_app.test_cli_runner().invoke(args=[
            "acp", "demo-purchase", "--base-url", url, "--api-key", "not-the-demo-key-000000"])
    assert result.exit_code == 1
    assert "401" in result.output


def test_flask_command_line_against_the_served_example_app(demo_app: Flask, example: types.ModuleType,
                                                           fake: FakeStripe,
                                                           tmp_path: pathlib.Path) -> None:
    """The README's command, as a separate process: ``flask --app example_app acp
    demo-purchase``; its app finds the same fake Stripe through FAKE_STRIPE_PORT."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STRIPE_SECRET_KEY", "ACP_API_KEYS") and not k.startswith("FLASK_")}
    env.update(FAKE_STRIPE_PORT=fake.url.rsplit(":", 1)[1], ACP_SQLITE_PATH=str(tmp_path / "cli.sqlite3"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    before = set((ROOT / "instance").glob("*")) if (ROOT / "instance").exists() else set()
    with serve_app(demo_app) as url:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "example_app", "acp", "demo-purchase",
             "--base-url", url, "--api-key", example.DEMO_KEY, "--item", "tee_red_m"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    session = _last_json_line(done.stdout)
    validate_response(f"/checkout_sessions/{session['id']}/complete", 200, session)
    assert session["status"] == "completed"
    assert session["order"]
    assert fake.charges_count() == 1
    after = set((ROOT / "instance").glob("*")) if (ROOT / "instance").exists() else set()
    assert after == before  # the command used ACP_SQLITE_PATH, not the repository's instance folder


def test_readme_gunicorn_timeout_exceeds_one_completion(example: types.ModuleType) -> None:
    """gunicorn kills a sync worker silent for ``--timeout`` seconds (default 30):
    every gunicorn command in the README and example_app.py must outlast one
    complete's budget."""
    import re

    texts = [(ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "example_app.py")]
    commands = [c for text in texts for c in re.findall(r"gunicorn [^`\n]*example_app:app", text)]
    assert commands
    budget = example.app.extensions["acp"].service.complete_time_budget()
    assert budget > 30
    for command in commands:
        timeout = re.search(r"--timeout (\d+)", command)
        assert timeout is not None, command
        assert int(timeout.group(1)) > budget, (command, budget)


def test_readme_states_the_default_completion_budget(example: types.ModuleType) -> None:
    """The budget the README quotes for ACP_LOCK_LEASE is the one start-up checks."""
    budget = example.app.extensions["acp"].service.complete_time_budget()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{budget:g} s with the default Stripe settings" in readme
