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
    being ours: named by FAKE_STRIPE_URL."""
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.delenv("ACP_API_KEYS", raising=False)
    monkeypatch.setenv("FAKE_STRIPE_URL", fake.url)
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
    demo-purchase``; it mints its token on the Stripe the server advertises
    (its own app has another fake Stripe, recorded in its own folder)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STRIPE_SECRET_KEY", "ACP_API_KEYS") and not k.startswith("FLASK_")}
    env.pop("FAKE_STRIPE_URL", None)
    env.update(ACP_SQLITE_PATH=str(tmp_path / "cli.sqlite3"),
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


# --------------------------------------------------------------------------- what a user sees


def _env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLASK_", "ACP_", "STRIPE_", "FAKE_STRIPE_"))}
    env.update(ACP_SQLITE_PATH=str(tmp_path / "acp.sqlite3"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])), **extra)
    return env


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "example_app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("base_url", "says"), [
    ("127.0.0.1:8000", "is not a URL: give its scheme and host, e.g. http://127.0.0.1:8000"),
    ("http://127.0.0.1:9", "no ACP server answers at http://127.0.0.1:9"),
])
def test_demo_purchase_without_a_server_says_so_in_one_line(demo_app: Flask, example: types.ModuleType,
                                                             base_url: str, says: str) -> None:
    result = demo_app.test_cli_runner().invoke(args=[
        "acp", "demo-purchase", "--base-url", base_url, "--api-key", example.DEMO_KEY])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: --base-url {base_url!r} {says}"
                                                   if "scheme" in says else f"Error: {says}: start it "
                                                   "(python3 example_app.py) or fix --base-url"]


def test_the_handler_names_the_demo_stripe_and_a_live_key_refuses_demo_mode(demo_app: Flask,
                                                                            fake: FakeStripe) -> None:
    [handler] = demo_app.extensions["acp"].payments.handlers()
    assert handler.config["api_base"] == fake.url
    assert handler.config["environment"] == "test"
    plain = StripePaymentProcessor("sk_test_x", merchant_id="acct_x")
    assert "api_base" not in plain.handlers()[0].config
    from flask_acp.config import ConfigurationError
    from flask_acp.extension import ACP

    live = Flask("live")
    live.config.update(TESTING=True, ACP_AGENTS={"a": {"api_keys": ["a-key-0123456789abcdef"]}},
                       ACP_STRIPE_SECRET_KEY="sk_live_x", ACP_STRIPE_MERCHANT_ID="acct_x",
                       ACP_STRIPE_DEMO=True)
    with pytest.raises(ConfigurationError, match="ACP_STRIPE_DEMO: a demo advertises its Stripe"):
        ACP(live)


def test_the_example_app_answers_json_at_the_root_and_on_unknown_paths(demo_app: Flask) -> None:
    client = demo_app.test_client()
    root = client.get("/")
    assert root.status_code == 200
    assert root.is_json
    assert root.json is not None
    assert root.json["discovery"] == "/.well-known/acp.json"
    missing = client.get("/favicon.ico")
    assert missing.status_code == 404
    assert missing.is_json
    assert missing.json is not None
    assert missing.json["code"] == "not_found"


def test_importing_the_app_with_a_stripe_key_loads_no_test_package(tmp_path: pathlib.Path) -> None:
    """The fakes (and jsonschema's format checkers, seconds of CPU) are the demo's only."""
    code = ("import sys, example_app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'rfc3987_syntax') "
            "or m.startswith('flask_acp.testing')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=_env(tmp_path, STRIPE_SECRET_KEY="sk_test_example_0000",
                                   STRIPE_ACCOUNT_ID="acct_example"), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("env", "line"), [
    ({"ACP_API_KEYS": "shop:short"}, "  ACP_API_KEYS: "),
    ({"STRIPE_SECRET_KEY": "sk_test_example_0000"},
     "  STRIPE_ACCOUNT_ID: set it to your Stripe account id (acct_...) when ACP_STRIPE_SECRET_KEY is set"),
    ({"FLASK_ACP_IDEMPOTENCY_TTL": "-5"}, "  FLASK_ACP_IDEMPOTENCY_TTL: "),
    ({"ACP_WEBHOOK_URL": "https://agent.example/hooks"}, "  ACP_WEBHOOK_SECRET: set it (16+ characters)"),
    ({"ACP_WEBHOOK_URL": "https://agent.example/hooks", "ACP_WEBHOOK_SECRET": "short"},
     "  ACP_WEBHOOK_SECRET: "),
    ({"ACP_WEBHOOK_URL": "http://agent.example/hooks", "ACP_WEBHOOK_SECRET": "a-secret-0123456789"},
     "  ACP_WEBHOOK_URL: must be an https:// URL"),
])
def test_configuration_errors_name_the_variable_set_without_a_traceback(
        tmp_path: pathlib.Path, env: dict[str, str], line: str) -> None:
    done = _flask(_env(tmp_path, **env), "acp", "--help")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "flask-acp configuration is invalid:"
    assert any(x.startswith(line) for x in lines[1:]), done.stderr


@pytest.mark.timeout(120)
def test_a_second_demo_that_fails_to_start_leaves_the_servers_record(tmp_path: pathlib.Path) -> None:
    """``instance/demo.json`` names the running server's fake Stripe (CLI commands
    refund through it): a second ``python3 example_app.py`` that cannot start (the
    port is taken, a bad setting) must not replace it with a fake that dies with it."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path, PORT=str(port))
    record = tmp_path / "demo.json"
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "example_app.py"], cwd=ROOT, env=env, stdout=out,
                                  stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not record.exists() or json.loads(record.read_text()).get("pid") != server.pid:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        before = record.read_text()
        for extra in ({}, {"ACP_API_KEYS": "no-colon", "PORT": str(port + 1)}):
            second = subprocess.run([sys.executable, "example_app.py"], cwd=ROOT, env={**env, **extra},
                                    capture_output=True, text=True, timeout=60, check=False)
            assert second.returncode != 0, second.stderr
            assert "Traceback" not in second.stderr
            assert record.read_text() == before, (extra, second.stderr)
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(10)
