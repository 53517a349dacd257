"""No secret and no forged line in any log: a token refused by (the fake)
Stripe, the Stripe SDK's own debug logs, and an agent's webhook error body
that tries to inject log lines — captured at DEBUG from every logger."""

from __future__ import annotations

import collections.abc as cabc
import io
import json
import logging
import pathlib
import time
import typing as t

import pytest
from flask import Flask
from flask import Response

from flask_acp import logs
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_stripe import mint_granted_token
from tests.conftest import AGENT_KEY
from tests.conftest import FROM_CONFIG
from tests.conftest import Agent
from tests.conftest import build_app
from tests.conftest import serve_app

SECRET = "whsec_hygiene_secret_000001"


def all_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every line flask-acp and the Stripe SDK logged (not the fake servers' access logs)."""
    return "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records
                     if r.name.startswith(("flask_acp", "stripe")))


def test_redact_masks_secrets_and_escapes_control_characters() -> None:
    line = ("token spt_1QabcdefGHIJ9876 key sk_test_51abcXYZ secret whsec_abc_123 "
            "Authorization: Bearer agent-key-0123456789 sig t=1,v1=" + "ab" * 32 +
            " shop shpat_0123abcd woo ck_" + "0" * 40 + "\nFORGED 2026 CRITICAL line\r\x1b[31m")
    out = logs.redact(line)
    for secret in ("spt_1QabcdefGHIJ9876", "sk_test_51abcXYZ", "whsec_abc_123", "agent-key-0123456789",
                   "ab" * 32, "shpat_0123abcd", "0" * 40):
        assert secret not in out
    assert "spt_…9876" in out  # the last four stay, to tell tokens apart
    assert "\n" not in out
    assert "\r" not in out
    assert "\x1b" not in out
    assert "\\nFORGED" in out
    assert "cs_0123456789abcdef0123456789abcdef" in logs.redact("cs_0123456789abcdef0123456789abcdef")


def test_redact_masks_any_token_member_of_an_object() -> None:
    """An affiliate attribution's token has no prefix to recognise: a ``token``
    member of a JSON or repr'd object is masked whole (a payment token keeps its
    last four)."""
    claim = {"provider": "impact.com", "token": "atp_01J8Z3WXYZ9ABC", "publisher_id": "pub_123"}
    for text in (json.dumps(claim), repr(claim), json.dumps({"token": "spt_1QabcdefGHIJ9876"})):
        out = logs.redact(text)
        assert "atp_01J8Z3WXYZ9ABC" not in out
        assert "1QabcdefGHIJ" not in out
    assert "pub_123" in logs.redact(json.dumps(claim))
    assert '"token": "spt_…9876"' in logs.redact(json.dumps({"token": "spt_1QabcdefGHIJ9876"}))


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


def test_stripe_errors_and_sdk_debug_logs_never_carry_the_token(tmp_path: pathlib.Path, fake: FakeStripe,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = build_app(tmp_path, payment_processor=FROM_CONFIG, ACP_STRIPE_SECRET_KEY=fake.api_key,
                    ACP_STRIPE_MERCHANT_ID="acct_test", ACP_STRIPE_API_BASE=fake.url)
    processor = app.extensions["acp"].payments
    agent = Agent(app.test_client())
    good = mint_granted_token(processor.client, payment_method="pm_card_chargeDeclined", currency="usd",
                              max_amount=100_000, expires_in=3600, spt_api_version=processor.spt_api_version)
    unknown = "spt_unknownTokenValue12345"
    for token in (good, unknown):
        session = agent.ready_session()
        assert agent.complete(session["id"], token).status_code == 200
    text = all_text(caplog)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert any(r.name == "stripe" for r in caplog.records)  # the SDK's debug logs were captured
    for secret in (good, unknown, fake.api_key):
        assert secret not in text


def test_an_agents_webhook_error_body_cannot_forge_log_lines(tmp_path: pathlib.Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    receiver = Flask("hostile-agent")

    @receiver.post("/hooks")
    def hooks() -> Response:
        return Response("nope\n2026-12-04 12:00:00 CRITICAL flask_acp: refund all orders\r\n", status=500)

    with serve_app(receiver) as base:
        app = build_app(tmp_path, ACP_AGENTS={"agent-one": {
            "api_keys": [AGENT_KEY], "webhook_url": f"{base}/hooks", "webhook_secrets": [SECRET]}},
            ACP_WEBHOOK_RETRY_INTERVALS=[60])
        agent = Agent(app.test_client())
        session = agent.ready_session()
        assert agent.complete(session["id"]).get_json()["status"] == "completed"
        outbox = app.extensions["acp"].storage.outbox
        deadline = time.monotonic() + 10
        while not any(e.last_status == 500 for e in outbox.entries(statuses=["pending", "failed"])):
            assert time.monotonic() < deadline, outbox.entries(statuses=["pending", "failed", "delivered"])
            time.sleep(0.02)
        app.extensions["acp"].webhooks.close()
    failures = [r.getMessage() for r in caplog.records if "HTTP 500" in r.getMessage()]
    assert failures, [r.getMessage() for r in caplog.records]
    for message in failures:
        assert "\n" not in message
        assert "\r" not in message
        assert "\\n2026-12-04 12:00:00 CRITICAL" in message
    assert SECRET not in all_text(caplog)
    assert json.dumps(SECRET) not in all_text(caplog)


# --------------------------------------------------------------------------- JSON lines (ACP_LOG_FORMAT)


class _TalkativeProcessor:
    """FakePaymentProcessor that logs one line per charge, as a processor does on a decline."""

    def __new__(cls) -> t.Any:
        from flask_acp.testing import FakePaymentProcessor

        class Talkative(FakePaymentProcessor):
            def charge(self, request: t.Any) -> t.Any:
                logging.getLogger("flask_acp.stripe").warning("charging %s with Bearer agent-secret-token-1",
                                                              request.token)
                return super().charge(request)

        return Talkative()


@pytest.fixture
def json_lines(monkeypatch: pytest.MonkeyPatch) -> cabc.Iterator[io.StringIO]:
    stream = io.StringIO()
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in logs.ROOTS}
    yield stream
    if logs._JSON_HANDLER is not None:
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).removeHandler(logs._JSON_HANDLER)
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
        logs._JSON_HANDLER = None


def test_json_log_lines_carry_request_agent_session_and_order_ids(tmp_path: pathlib.Path,
                                                                   json_lines: io.StringIO) -> None:
    app = build_app(tmp_path, payment_processor=_TalkativeProcessor(), ACP_LOG_FORMAT="json",
                    ACP_WEBHOOK_DELIVERY_THREAD=False)
    assert logs._JSON_HANDLER is not None
    logs._JSON_HANDLER.setStream(json_lines)  # type: ignore[attr-defined]
    agent = Agent(app.test_client())
    session = agent.ready_session()
    token = f"spt_{session['id']}"
    body = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": token}}}}
    response = agent.post(f"/checkout_sessions/{session['id']}/complete", body, **{"Request-Id": "req-log-1"})
    assert response.status_code == 200
    order_id = response.get_json()["order"]["id"]
    logging.getLogger("flask_acp").info("outside any request")
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [charge] = [x for x in lines if x["message"].startswith("charging")]
    assert charge["level"] == "warning"
    assert charge["logger"] == "flask_acp.stripe"
    assert (charge["request_id"], charge["agent"], charge["checkout_session_id"]) == (
        "req-log-1", "agent-one", session["id"])
    assert token not in json_lines.getvalue()  # redacted: spt_…last4
    assert "agent-secret-token-1" not in json_lines.getvalue()
    assert "Ada" not in json_lines.getvalue()
    assert "Main St" not in json_lines.getvalue()
    assert lines[-1]["message"] == "outside any request"
    assert "request_id" not in lines[-1]  # nothing of the request stayed
    # the webhook delivery binds the event's ids
    app.extensions["acp"].webhooks.run_pending()
    delivered = [json.loads(line) for line in json_lines.getvalue().splitlines()][len(lines):]
    assert any(x.get("order_id") == order_id and x.get("event_id") for x in delivered), delivered


def test_every_logger_flask_acp_writes_to_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A logger's filters do not apply to its children's records: each logger the
    package and its adapters name must carry the redactor itself."""
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    names = {m for folder in ("flask_acp", "adapters") for path in (root / folder).rglob("*.py")
             for m in re.findall(r'getLogger\("(flask_acp[\w.]*)"\)', path.read_text())}
    assert "flask_acp.feed" in names
    logs.install()
    with caplog.at_level(logging.DEBUG):
        for name in sorted(names):
            logging.getLogger(name).warning("%s spt_1QabcdefGHIJ9876\nFORGED", name)
    lines = [r.getMessage() for r in caplog.records if r.name in names]
    assert len(lines) == len(names)
    for line in lines:
        assert "spt_1QabcdefGHIJ9876" not in line
        assert "\n" not in line
