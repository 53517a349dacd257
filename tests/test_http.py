"""The HTTP surface as an agent sees it (ACP 2026-04-17): auth, versioning,
idempotency, content negotiation, routing, transport, localisation,
validation, discovery, configuration errors and the session state machine.

No mocks: real apps built with ``build_app``, a real SQLite store, the
embedded catalog adapter and the fake payment processor. Every ACP response
body is checked against the official JSON Schema by ``ValidatingClient``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import pathlib
import time
import typing as t
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_acp import ACP
from flask_acp.api.idempotency import fingerprint
from flask_acp.catalog import CatalogAdapter
from flask_acp.errors import AdapterUnavailableError
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing import acp_headers
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import AGENT_KEY_ROTATED
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app

VERSION = "2026-04-17"
#: every version served by default, newest first (as ``Error.supported_versions`` lists them)
ALL_VERSIONS = ["2026-04-17", "2026-01-30", "2026-01-16", "2025-12-12", "2025-09-29"]
CREATE_BODY: dict[str, t.Any] = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}}


def assert_error(response: TestResponse, status: int, code: str, *, type_: str = "invalid_request",
                 param: str | None = None) -> dict[str, t.Any]:
    """A flat ACP ``Error`` body with this status, type and code (and param)."""
    assert response.status_code == status, (response.status, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["type"] == type_, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    if param is not None:
        assert body.get("param") == param, body
    return t.cast(dict[str, t.Any], body)


def post_raw(client: FlaskClient, path: str, data: bytes | str, *, key: str = AGENT_KEY,
             idempotency_key: str | None = None, **headers: str) -> TestResponse:
    h = acp_headers(key, idempotency_key=idempotency_key or str(uuid.uuid4()))
    h.update(headers)
    return client.post(path, data=data, headers=h)


# --- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None,
    f"Basic {AGENT_KEY}",
    "Bearer not-a-valid-key-at-all-000",
    "Bearer ",
    AGENT_KEY,
])
def test_bad_authorization_is_401_flat_error(client: FlaskClient, authorization: str | None) -> None:
    headers = acp_headers(AGENT_KEY)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    for response in (
        client.get("/checkout_sessions/cs_x", headers=headers),
        client.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=headers),
    ):
        body = assert_error(response, 401, "unauthorized")
        assert set(body) <= {"type", "code", "message", "param"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_both_rotated_keys_of_one_agent_work(client: FlaskClient) -> None:
    first = Agent(client, AGENT_KEY).create()
    assert first.status_code == 201
    session_id = first.get_json()["id"]
    rotated = Agent(client, AGENT_KEY_ROTATED)
    got = client.get(f"/checkout_sessions/{session_id}", headers=rotated.headers())
    assert got.status_code == 200
    assert got.get_json()["id"] == session_id
    assert rotated.create().status_code == 201


def test_session_of_another_agent_is_404(client: FlaskClient, agent: Agent) -> None:
    session = agent.ready_session()
    sid = session["id"]
    other = Agent(client, OTHER_KEY)
    assert_error(client.get(f"/checkout_sessions/{sid}", headers=other.headers()), 404,
                 "checkout_session_not_found")
    assert_error(other.post(f"/checkout_sessions/{sid}", {"order_notes": "hi"}), 404,
                 "checkout_session_not_found")
    assert_error(other.complete(sid), 404, "checkout_session_not_found")
    assert_error(other.post(f"/checkout_sessions/{sid}/cancel"), 404, "checkout_session_not_found")
    # untouched for its owner
    mine = client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert mine.status_code == 200
    assert mine.get_json()["status"] == "ready_for_payment"
    assert "order_notes" not in mine.get_json()


def test_unknown_session_is_404(client: FlaskClient, agent: Agent) -> None:
    assert_error(client.get("/checkout_sessions/cs_nope", headers=agent.headers()), 404,
                 "checkout_session_not_found")


# --- API-Version ------------------------------------------------------------------------


def test_missing_api_version_is_400_with_supported_versions(client: FlaskClient) -> None:
    headers = acp_headers(AGENT_KEY)
    del headers["API-Version"]
    for response in (client.get("/checkout_sessions/cs_x", headers=headers),
                     client.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=headers)):
        body = assert_error(response, 400, "missing_api_version")
        assert body["supported_versions"] == ALL_VERSIONS


def test_unsupported_api_version_is_400_with_supported_versions(client: FlaskClient) -> None:
    headers = acp_headers(AGENT_KEY, version="2025-10-01")
    response = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=headers)
    body = assert_error(response, 400, "unsupported_api_version")
    assert body["supported_versions"] == ALL_VERSIONS


def test_a_version_not_selected_in_acp_api_versions_is_unsupported(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path, ACP_API_VERSIONS=["2026-04-17"]).test_client()
    headers = acp_headers(AGENT_KEY, version="2025-09-29")
    body = {"items": [{"id": "item_123", "quantity": 1}]}
    response = client.post("/checkout_sessions", data=json.dumps(body),
                           headers=headers)
    body = assert_error(response, 400, "unsupported_api_version")
    assert body["supported_versions"] == [VERSION]


# --- idempotency --------------------------------------------------------------------------


def test_missing_idempotency_key_on_every_post(client: FlaskClient, agent: Agent) -> None:
    sid = agent.ready_session()["id"]
    headers = acp_headers(AGENT_KEY)
    del headers["Idempotency-Key"]
    complete = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": "spt_123"}}}}
    for path, body in (("/checkout_sessions", CREATE_BODY),
                       (f"/checkout_sessions/{sid}", {"order_notes": "x"}),
                       (f"/checkout_sessions/{sid}/complete", complete),
                       (f"/checkout_sessions/{sid}/cancel", {})):
        response = client.post(path, data=json.dumps(body), headers=headers)
        assert_error(response, 400, "idempotency_key_required")
        assert "Idempotency-Key" not in response.headers
    # cancel with no body at all needs a key too
    assert_error(client.post(f"/checkout_sessions/{sid}/cancel", headers=headers), 400,
                 "idempotency_key_required")
    # nothing happened
    assert client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).get_json()["status"] == \
        "ready_for_payment"


def test_create_replay_returns_same_status_and_body(app: Flask, client: FlaskClient, agent: Agent) -> None:
    key = str(uuid.uuid4())
    first = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    second = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Idempotency-Key"] == key
    assert second.mimetype == "application/json"
    assert second.get_data() == first.get_data()
    assert second.get_json()["id"] == first.get_json()["id"]
    # no second session: a new key gets a new id, the replay does not
    third = agent.post("/checkout_sessions", CREATE_BODY)
    assert third.get_json()["id"] != first.get_json()["id"]
    sessions = app.extensions["acp"].storage.sessions
    open_ids = list(sessions.session_ids(statuses=("not_ready_for_payment", "ready_for_payment")))
    assert len(open_ids) == 2


def test_replay_ignores_key_order_and_integral_floats(agent: Agent) -> None:
    key = str(uuid.uuid4())
    body = {"currency": "usd", "line_items": [{"id": "item_123", "quantity": 1}], "capabilities": {}}
    first = agent.post("/checkout_sessions", body, key=key)
    assert first.status_code == 201
    reordered = {"capabilities": {}, "line_items": [{"quantity": 1.0, "id": "item_123"}], "currency": "usd"}
    second = agent.post("/checkout_sessions", reordered, key=key)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json()["id"] == first.get_json()["id"]


def test_same_key_different_body_is_422_conflict(agent: Agent) -> None:
    key = str(uuid.uuid4())
    assert agent.post("/checkout_sessions", CREATE_BODY, key=key).status_code == 201
    other = {**CREATE_BODY, "line_items": [{"id": "item_123", "quantity": 2}]}
    response = agent.post("/checkout_sessions", other, key=key)
    assert_error(response, 422, "idempotency_conflict")
    assert "Idempotent-Replayed" not in response.headers
    # null vs absent differ too
    assert_error(agent.post("/checkout_sessions", {**CREATE_BODY, "locale": None}, key=key), 422,
                 "idempotency_conflict")


def test_same_key_on_two_paths_is_independent(client: FlaskClient, agent: Agent) -> None:
    key = str(uuid.uuid4())
    created = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert created.status_code == 201
    sid = created.get_json()["id"]
    updated = agent.post(f"/checkout_sessions/{sid}", {"line_items": [{"id": "item_123", "quantity": 3}]},
                         key=key)
    assert updated.status_code == 200
    assert "Idempotent-Replayed" not in updated.headers
    assert updated.get_json()["line_items"][0]["quantity"] == 3
    # and the same key is scoped per agent as well
    other = Agent(client, OTHER_KEY).post("/checkout_sessions", CREATE_BODY, key=key)
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.get_json()["id"] != sid


def test_update_replay_does_not_run_again(client: FlaskClient, agent: Agent) -> None:
    sid = agent.create().get_json()["id"]
    key = str(uuid.uuid4())
    two = {"line_items": [{"id": "item_123", "quantity": 2}]}
    first = agent.post(f"/checkout_sessions/{sid}", two, key=key)
    assert first.status_code == 200
    assert first.get_json()["line_items"][0]["quantity"] == 2
    assert agent.post(f"/checkout_sessions/{sid}",
                      {"line_items": [{"id": "item_123", "quantity": 3}]}).status_code == 200
    replay = agent.post(f"/checkout_sessions/{sid}", two, key=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    current = client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).get_json()
    assert current["line_items"][0]["quantity"] == 3


def test_idempotency_key_longer_than_255_is_400(agent: Agent) -> None:
    response = agent.post("/checkout_sessions", CREATE_BODY, key="k" * 256)
    body = assert_error(response, 400, "invalid_idempotency_key")
    assert "param" not in body  # a header, not a JSONPath into the body
    assert "Idempotency-Key" not in response.headers
    assert agent.post("/checkout_sessions", CREATE_BODY, key="k" * 255).status_code == 201


class FlakyAdapter(CatalogAdapter):
    """The catalog adapter, except that its first quote finds the platform down."""

    failures = 1

    def quote(self, request: t.Any) -> t.Any:
        if self.failures > 0:
            self.failures -= 1
            raise AdapterUnavailableError("platform timed out", retry_after=7)
        return super().quote(request)


def test_5xx_is_not_stored_and_retry_succeeds(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_ADAPTER=f"{__name__}:FlakyAdapter")
    assert isinstance(app.extensions["acp"].adapter, FlakyAdapter)
    agent = Agent(app.test_client())
    key = str(uuid.uuid4())
    first = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert_error(first, 503, "service_unavailable", type_="service_unavailable")
    assert first.headers["Retry-After"] == "7"
    retry = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    replay = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["id"] == retry.get_json()["id"]


def test_in_flight_key_is_409_with_retry_after(app: Flask, agent: Agent) -> None:
    key = str(uuid.uuid4())
    state = app.extensions["acp"]
    outcome = state.storage.idempotency.begin(
        "agent-one /checkout_sessions", key, f"2026-04-17:{fingerprint(CREATE_BODY, present=True)}",
        now=time.time(), lease=120, retention=86400)
    assert outcome.state == "new"
    response = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert_error(response, 409, "idempotency_in_flight")
    assert int(response.headers["Retry-After"]) >= 1
    # a different body under the in-flight key is a conflict, not a wait
    assert_error(agent.post("/checkout_sessions", {**CREATE_BODY, "locale": "en-US"}, key=key), 422,
                 "idempotency_conflict")
    # the claim belongs to agent-one only
    other = Agent(agent.client, OTHER_KEY).post("/checkout_sessions", CREATE_BODY, key=key)
    assert other.status_code == 201


# --- content ------------------------------------------------------------------------------


def test_non_json_content_type_is_415(client: FlaskClient) -> None:
    response = post_raw(client, "/checkout_sessions", "currency=usd", **{"Content-Type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")
    response = post_raw(client, "/checkout_sessions", json.dumps(CREATE_BODY),
                        **{"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 415, "unsupported_media_type")


def test_a_key_sent_twice_is_400_and_nothing_is_created(client: FlaskClient) -> None:
    """Parsers disagree on which duplicate wins; we take neither."""
    body = '{"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}, "currency": "eur"}'
    error = assert_error(post_raw(client, "/checkout_sessions", body), 400, "invalid_json")
    assert "'currency' appears twice" in error["message"]
    nested = '{"currency": "usd", "line_items": [{"id": "item_123", "id": "item_456"}], "capabilities": {}}'
    assert_error(post_raw(client, "/checkout_sessions", nested), 400, "invalid_json")


def test_malformed_json_is_400_invalid_json(client: FlaskClient) -> None:
    assert_error(post_raw(client, "/checkout_sessions", '{"currency": "usd",'), 400, "invalid_json")
    assert_error(post_raw(client, "/checkout_sessions", b"\xff\xfe{}"), 400, "invalid_json")


def test_empty_body_on_create_is_400(client: FlaskClient) -> None:
    assert_error(post_raw(client, "/checkout_sessions", b""), 400, "invalid_json")


@pytest.mark.parametrize("payload", ["[]", '[{"currency": "usd"}]', '"usd"', "42", "null"])
def test_non_object_json_body_is_400(client: FlaskClient, payload: str) -> None:
    assert_error(post_raw(client, "/checkout_sessions", payload), 400, "invalid_json", param="$")


def test_body_larger_than_limit_is_413_json(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_MAX_BODY_BYTES=2048)
    client = app.test_client()
    big = {**CREATE_BODY, "order_notes": "x" * 4000}
    response = post_raw(client, "/checkout_sessions", json.dumps(big))
    assert_error(response, 413, "payload_too_large")
    small = post_raw(client, "/checkout_sessions", json.dumps(CREATE_BODY))
    assert small.status_code == 201


def test_oversized_body_without_content_length_is_413(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_MAX_BODY_BYTES=2048)
    client = app.test_client()
    big = json.dumps({**CREATE_BODY, "order_notes": "x" * 4000}).encode()
    # a chunked upload, as a server that de-chunks (wsgi.input_terminated) hands it over
    response = client.post("/checkout_sessions", input_stream=io.BytesIO(big),
                           headers={**acp_headers(AGENT_KEY), "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.request.content_length is None
    assert_error(response, 413, "payload_too_large")
    # a small chunked body still works
    small = client.post("/checkout_sessions", input_stream=io.BytesIO(json.dumps(CREATE_BODY).encode()),
                        headers={**acp_headers(AGENT_KEY), "Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert small.status_code == 201


# --- routing ------------------------------------------------------------------------------


def test_unknown_path_under_prefix_is_json_404(client: FlaskClient, agent: Agent) -> None:
    response = client.get("/checkout_sessions/x/bogus", headers=agent.headers())
    assert_error(response, 404, "not_found")
    response = client.post("/checkout_sessions/x/bogus", headers=agent.headers())
    assert_error(response, 404, "not_found")


def test_wrong_method_is_json_405(client: FlaskClient, agent: Agent) -> None:
    response = client.delete("/checkout_sessions/x", headers=agent.headers())
    assert_error(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed
    response = client.get("/checkout_sessions", headers=agent.headers())
    assert_error(response, 405, "method_not_allowed")


def test_paths_outside_the_prefix_keep_flask_html_errors(app: Flask) -> None:
    @app.get("/hello")
    def hello() -> str:
        return "hi"

    client = app.test_client()
    assert client.get("/hello").get_data(as_text=True) == "hi"
    response = client.get("/nothing")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert response.get_json(silent=True) is None
    response = client.delete("/hello")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


def test_prefix_boundary_without_url_prefix(app: Flask) -> None:
    plain = FlaskClient(app, app.response_class)
    # "/checkout_sessionsfoo" is not an ACP path: the host app's HTML 404
    response = plain.get("/checkout_sessionsfoo")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    response = plain.get("/checkout_sessions")
    assert response.status_code == 405
    assert response.mimetype == "application/json"


def test_routing_errors_echo_request_id(client: FlaskClient, agent: Agent) -> None:
    for response in (
        client.get("/checkout_sessions/x/bogus", headers=agent.headers(**{"Request-Id": "req_404"})),
        client.delete("/checkout_sessions/x", headers=agent.headers(**{"Request-Id": "req_404"})),
    ):
        assert response.headers["Request-Id"] == "req_404"
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/checkout_sessions/x/bogus", headers=agent.headers()).headers["Request-Id"]


def test_host_app_404_handler_still_used_outside_prefix(tmp_path: pathlib.Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))

    @app.errorhandler(404)
    def custom(exc: Exception) -> tuple[str, int]:
        return "custom not found", 404

    app.config.update(TESTING=True, ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY]}},
                      ACP_SQLITE_PATH=str(tmp_path / "acp.sqlite3"))
    ACP(app, payment_processor=FakePaymentProcessor())
    client = app.test_client()
    assert client.get("/nothing").get_data(as_text=True) == "custom not found"
    response = client.get("/checkout_sessions/x/bogus", headers=acp_headers(AGENT_KEY))
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_mounted_under_url_prefix(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_URL_PREFIX="/acp")
    client = app.test_client()
    agent = Agent(client)
    created = agent.post("/acp/checkout_sessions", CREATE_BODY)
    assert created.status_code == 201
    sid = created.get_json()["id"]
    assert client.get(f"/acp/checkout_sessions/{sid}", headers=agent.headers()).status_code == 200
    assert_error(client.get("/acp/bogus", headers=agent.headers()), 404, "not_found")
    assert_error(client.delete(f"/acp/checkout_sessions/{sid}", headers=agent.headers()), 405,
                 "method_not_allowed")
    # not mounted at the root any more: the root is the host app's, with its HTML 404
    plain = FlaskClient(app, app.response_class)
    root = plain.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=agent.headers())
    assert root.status_code == 404
    assert root.mimetype == "text/html"
    # a path that merely starts with the prefix is not under it
    assert plain.get("/acpx/checkout_sessions").mimetype == "text/html"
    discovery = client.get("/.well-known/acp.json")
    assert discovery.get_json()["api_base_url"].endswith("/acp")


# --- HTTPS --------------------------------------------------------------------------------


def test_plain_http_is_403_outside_testing(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, TESTING=False)
    client = app.test_client()
    agent = Agent(client)
    response = client.get("/checkout_sessions/cs_x", headers=agent.headers())
    assert_error(response, 403, "https_required")
    assert_error(agent.post("/checkout_sessions", CREATE_BODY), 403, "https_required")
    # checked before auth: no key is needed to learn HTTPS is required
    assert_error(client.get("/checkout_sessions/cs_x"), 403, "https_required")
    # the message says what to set
    assert "set ACP_TRUSTED_PROXY_HOPS to the number of proxies" in response.get_json()["message"]


def test_https_request_is_accepted(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, TESTING=False)
    client = app.test_client()
    response = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY),
                           headers=acp_headers(AGENT_KEY), base_url="https://localhost")
    assert response.status_code == 201


def test_forwarded_proto_trusted_only_with_proxy_hops(tmp_path: pathlib.Path) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    untrusted = build_app(tmp_path / "a", TESTING=False).test_client()
    response = untrusted.get("/checkout_sessions/cs_x", headers=acp_headers(AGENT_KEY, **forwarded))
    assert_error(response, 403, "https_required")

    client = build_app(tmp_path / "b", TESTING=False, ACP_TRUSTED_PROXY_HOPS=1).test_client()
    response = client.get("/checkout_sessions/cs_x", headers=acp_headers(AGENT_KEY, **forwarded))
    assert_error(response, 404, "checkout_session_not_found")
    created = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY),
                          headers=acp_headers(AGENT_KEY, **forwarded))
    assert created.status_code == 201
    # behind the proxy, a request that reached it over http stays refused
    response = client.get("/checkout_sessions/cs_x",
                          headers=acp_headers(AGENT_KEY, **{**forwarded, "X-Forwarded-Proto": "http"}))
    assert_error(response, 403, "https_required")
    # the proxy appends: only the last hop's value counts
    response = client.get("/checkout_sessions/cs_x", headers=acp_headers(
        AGENT_KEY, **{"X-Forwarded-Proto": "https, http", "X-Forwarded-For": "1.2.3.4, 203.0.113.9"}))
    assert_error(response, 403, "https_required")


def test_forwarded_proto_alone_is_enough_behind_a_trusted_proxy(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path, TESTING=False, ACP_TRUSTED_PROXY_HOPS=1).test_client()
    response = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY),
                           headers=acp_headers(AGENT_KEY, **{"X-Forwarded-Proto": "https"}))
    assert response.status_code == 201
    # a trusted proxy that says nothing about the scheme: refuse, even over https
    response = client.get("/checkout_sessions/cs_x", headers=acp_headers(AGENT_KEY),
                          base_url="https://localhost")
    assert_error(response, 403, "https_required")
    assert ("ACP_TRUSTED_PROXY_HOPS is 1 but the request carries 0 X-Forwarded-Proto value(s): make each "
            "proxy set it") in response.get_json()["message"]
    response = client.get("/checkout_sessions/cs_x",
                          headers=acp_headers(AGENT_KEY, **{"X-Forwarded-Proto": "http"}))
    assert response.get_json()["message"].endswith("the client used plain HTTP: call the https:// URL.")


def test_insecure_loopback_is_refused_in_production_unless_forced(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="ACP_ALLOW_INSECURE_LOOPBACK: plain HTTP from loopback"):
        build_app(tmp_path / "a", TESTING=False, ACP_ALLOW_INSECURE_LOOPBACK=True)
    assert build_app(tmp_path / "b", ACP_ALLOW_INSECURE_LOOPBACK=True)  # testing: allowed


def test_without_a_base_url_production_needs_trusted_hosts(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="ACP_API_BASE_URL: set it to the public URL"):
        build_app(tmp_path / "a", TESTING=False, ACP_API_BASE_URL=None)
    app = build_app(tmp_path / "b", TESTING=False, ACP_API_BASE_URL=None, TRUSTED_HOSTS=["shop.example"])
    good = app.test_client().get("/.well-known/acp.json", base_url="https://shop.example")
    assert good.get_json()["api_base_url"] == "https://shop.example"
    forged = app.test_client().get("/.well-known/acp.json", base_url="https://evil.example")
    assert forged.status_code == 400
    assert b"evil.example" not in forged.data


def test_insecure_loopback_allowed_only_from_loopback(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, TESTING=False, ACP_ALLOW_INSECURE_LOOPBACK=True,
                    ACP_FORCE_INSECURE_LOOPBACK=True)
    client = app.test_client()
    response = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=acp_headers(AGENT_KEY))
    assert response.status_code == 201
    response = client.post("/checkout_sessions", data=json.dumps(CREATE_BODY), headers=acp_headers(AGENT_KEY),
                           environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert_error(response, 403, "https_required")


# --- headers ------------------------------------------------------------------------------


def test_request_id_is_echoed_or_generated(client: FlaskClient, agent: Agent) -> None:
    given = client.get("/checkout_sessions/cs_x", headers=agent.headers(**{"Request-Id": "req_abc123"}))
    assert given.headers["Request-Id"] == "req_abc123"
    created = agent.post("/checkout_sessions", CREATE_BODY, **{"Request-Id": "req_create_1"})
    assert created.status_code == 201
    assert created.headers["Request-Id"] == "req_create_1"
    generated = client.get("/checkout_sessions/cs_x", headers=agent.headers())
    assert generated.headers.get("Request-Id")
    another = client.get("/checkout_sessions/cs_x", headers=agent.headers())
    assert another.headers["Request-Id"] != generated.headers["Request-Id"]
    # on errors raised before auth too
    unauth = client.get("/checkout_sessions/cs_x", headers={"Request-Id": "req_unauth"})
    assert unauth.status_code == 401
    assert unauth.headers["Request-Id"] == "req_unauth"


def test_idempotency_key_is_echoed_on_post(client: FlaskClient, agent: Agent) -> None:
    key = str(uuid.uuid4())
    created = agent.post("/checkout_sessions", CREATE_BODY, key=key)
    assert created.headers["Idempotency-Key"] == key
    sid = created.get_json()["id"]
    for path, body in ((f"/checkout_sessions/{sid}", {"order_notes": "x"}),
                       (f"/checkout_sessions/{sid}/cancel", None)):
        key = str(uuid.uuid4())
        assert agent.post(path, body, key=key).headers["Idempotency-Key"] == key
    assert "Idempotency-Key" not in client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).headers


def test_session_responses_are_not_cached(client: FlaskClient, agent: Agent) -> None:
    created = agent.create()
    assert created.headers["Cache-Control"] == "no-store"


def test_accept_language_fr(client: FlaskClient, agent: Agent) -> None:
    response = agent.post("/checkout_sessions", CREATE_BODY, **{"Accept-Language": "fr-FR,fr;q=0.9"})
    assert response.status_code == 201
    assert response.headers["Content-Language"] == "fr"
    labels = {t_["type"]: t_["display_text"] for t_ in response.get_json()["totals"]}
    assert labels["subtotal"] == "Sous-total"
    sid = response.get_json()["id"]
    got = client.get(f"/checkout_sessions/{sid}", headers=agent.headers(**{"Accept-Language": "fr"}))
    assert got.headers["Content-Language"] == "fr"
    assert {t_["type"]: t_["display_text"] for t_ in got.get_json()["totals"]}["subtotal"] == "Sous-total"
    # the language is per request, not stored with the session
    en = client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert en.headers["Content-Language"] == "en"
    assert {t_["type"]: t_["display_text"] for t_ in en.get_json()["totals"]}["subtotal"] == "Subtotal"


def test_unknown_language_falls_back_to_english(agent: Agent) -> None:
    response = agent.post("/checkout_sessions", CREATE_BODY, **{"Accept-Language": "xx-YY, tlh"})
    assert response.status_code == 201
    assert response.headers["Content-Language"] == "en"
    labels = {t_["type"]: t_["display_text"] for t_ in response.get_json()["totals"]}
    assert labels["subtotal"] == "Subtotal"
    assert labels["total"] == "Total"


# --- validation ---------------------------------------------------------------------------


def _create(agent: Agent, body: dict[str, t.Any]) -> TestResponse:
    return agent.post("/checkout_sessions", body)


def test_missing_currency(agent: Agent) -> None:
    body = {"line_items": [{"id": "item_123"}], "capabilities": {}}
    assert_error(_create(agent, body), 400, "invalid", param="$.currency")


@pytest.mark.parametrize("quantity", ["2", 0, -1, True, 1.5, None, 10_001])
def test_bad_quantity_points_at_the_item(agent: Agent, quantity: t.Any) -> None:
    body = {**CREATE_BODY, "line_items": [{"id": "item_123"}, {"id": "item_456", "quantity": quantity}]}
    response = _create(agent, body)
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.line_items[1].quantity"


def test_string_quantity_is_invalid_type(agent: Agent) -> None:
    body = {**CREATE_BODY, "line_items": [{"id": "item_123"}, {"id": "item_456", "quantity": "2"}]}
    assert_error(_create(agent, body), 400, "invalid_type", param="$.line_items[1].quantity")


def test_quantity_defaults_to_one(agent: Agent) -> None:
    response = _create(agent, {**CREATE_BODY, "line_items": [{"id": "item_456"}]})
    assert response.status_code == 201
    line = response.get_json()["line_items"][0]
    assert line["quantity"] == 1
    assert line["item"] == {"id": "item_456"}


def test_unknown_fields_are_ignored(agent: Agent) -> None:
    body = {**CREATE_BODY, "future_field": {"x": 1}, "line_items": [{"id": "item_123", "quantity": 2,
                                                                     "gift_wrap": True}]}
    response = _create(agent, body)
    assert response.status_code == 201
    session = response.get_json()
    assert "future_field" not in session
    assert session["line_items"][0]["quantity"] == 2
    assert "gift_wrap" not in session["line_items"][0]["item"]


@pytest.mark.parametrize("currency", ["zzz", "us", "usdd", "", 840, "12$"])
def test_bad_currency(agent: Agent, currency: t.Any) -> None:
    response = _create(agent, {**CREATE_BODY, "currency": currency})
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.currency"


def test_currency_is_normalised_to_lowercase(agent: Agent) -> None:
    response = _create(agent, {**CREATE_BODY, "currency": "USD"})
    assert response.status_code == 201
    assert response.get_json()["currency"] == "usd"


@pytest.mark.parametrize("field", ["buyer", "fulfillment_details", "locale", "order_notes"])
def test_null_for_optional_field_is_400(agent: Agent, field: str) -> None:
    response = _create(agent, {**CREATE_BODY, field: None})
    assert_error(response, 400, "invalid", param=f"$.{field}")


def test_duplicate_item_ids_point_at_the_duplicate(agent: Agent) -> None:
    body = {**CREATE_BODY, "line_items": [{"id": "item_123"}, {"id": "item_456"}, {"id": "item_123"}]}
    response = _create(agent, body)
    error = assert_error(response, 400, "invalid", param="$.line_items[2].id")
    assert "line_items[0]" in error["message"]


def test_bad_address_points_at_the_field(agent: Agent) -> None:
    address = {k: v for k, v in ADDRESS.items() if k != "city"}
    response = _create(agent, {**CREATE_BODY, "fulfillment_details": {"address": address}})
    assert_error(response, 400, "invalid", param="$.fulfillment_details.address.city")


def test_a_country_code_with_a_trailing_newline_is_400(agent: Agent) -> None:
    """``$`` of a Python pattern also matches before a final newline: ``"US\\n"`` is no country."""
    address = {**ADDRESS, "country": "US\n"}
    response = _create(agent, {**CREATE_BODY, "fulfillment_details": {"address": address}})
    assert_error(response, 400, "invalid", param="$.fulfillment_details.address.country")


def test_empty_line_items_is_400(agent: Agent) -> None:
    assert_error(_create(agent, {**CREATE_BODY, "line_items": []}), 400, "invalid", param="$.line_items")


def test_update_validation_points_at_the_field(agent: Agent) -> None:
    sid = agent.create().get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}", {"line_items": [{"id": "item_123", "quantity": 0}]})
    assert_error(response, 400, "invalid", param="$.line_items[0].quantity")


def test_complete_without_payment_data(agent: Agent) -> None:
    sid = agent.ready_session()["id"]
    response = agent.post(f"/checkout_sessions/{sid}/complete", {"buyer": {"email": "a@b.example"}})
    assert_error(response, 400, "invalid", param="$.payment_data")


def test_complete_with_unknown_handler(client: FlaskClient, agent: Agent) -> None:
    sid = agent.ready_session()["id"]
    response = agent.complete(sid, handler_id="paypal")
    assert_error(response, 400, "invalid_payment_handler", param="$.payment_data.handler_id")
    assert client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).get_json()["status"] == \
        "ready_for_payment"


def test_complete_with_card_credential_type(agent: Agent) -> None:
    sid = agent.ready_session()["id"]
    body = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "card", "token": "4242424242424242"}}}}
    response = agent.post(f"/checkout_sessions/{sid}/complete", body)
    assert_error(response, 400, "invalid_credential_type",
                 param="$.payment_data.instrument.credential.type")


# --- discovery ----------------------------------------------------------------------------


def test_discovery_document(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path, ACP_API_BASE_URL="http://localhost").test_client()
    response = client.get("/.well-known/acp.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    cache = response.headers["Cache-Control"]
    assert "public" in cache
    assert "max-age=3600" in cache
    body = response.get_json()
    assert body["protocol"]["version"] == VERSION
    assert body["protocol"]["supported_versions"] == sorted(ALL_VERSIONS)  # oldest first here
    assert body["api_base_url"] == "http://localhost"
    assert body["capabilities"]["supported_currencies"] == ["usd"]
    assert "checkout" in body["capabilities"]["services"]


def test_discovery_needs_no_auth_even_with_bad_headers(client: FlaskClient) -> None:
    response = client.get("/.well-known/acp.json", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 200


def test_discovery_base_url_follows_prefix_and_config(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path / "a", ACP_URL_PREFIX="/api/acp").test_client()
    body = client.get("/.well-known/acp.json", base_url="https://shop.example").get_json()
    assert body["api_base_url"] == "https://shop.example/api/acp"
    client = build_app(tmp_path / "b", ACP_API_BASE_URL="https://api.shop.example/acp",
                       ACP_DISCOVERY_MAX_AGE=60).test_client()
    response = client.get("/.well-known/acp.json")
    assert response.get_json()["api_base_url"] == "https://api.shop.example/acp"
    assert "max-age=60" in response.headers["Cache-Control"]


# --- configuration errors -----------------------------------------------------------------


def _bare_app(tmp_path: pathlib.Path, **config: t.Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, ACP_SQLITE_PATH=str(tmp_path / "acp.sqlite3"), **config)
    return app


def test_init_without_agents_fails(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="ACP_AGENTS"):
        ACP(_bare_app(tmp_path), payment_processor=FakePaymentProcessor())


def test_short_idempotency_ttl_fails(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="86400") as info:
        build_app(tmp_path, ACP_IDEMPOTENCY_TTL=3600)
    assert "ACP_IDEMPOTENCY_TTL" in str(info.value)


def test_unknown_adapter_lists_installed_ones(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="nope") as info:
        build_app(tmp_path, ACP_ADAPTER="nope")
    assert "installed" in str(info.value)
    assert "catalog" in str(info.value)


def test_double_init_app_fails(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    with pytest.raises(RuntimeError, match="already registered"):
        ACP(payment_processor=FakePaymentProcessor()).init_app(app)


def test_missing_payment_processor_fails(tmp_path: pathlib.Path) -> None:
    app = _bare_app(tmp_path, ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY]}})
    with pytest.raises(RuntimeError, match="payment_processor"):
        ACP(app)


# --- state machine ------------------------------------------------------------------------


def test_cancel_then_everything_is_405(client: FlaskClient, agent: Agent) -> None:
    sid = agent.ready_session()["id"]
    canceled = agent.post(f"/checkout_sessions/{sid}/cancel",
                          {"intent_trace": {"reason_code": "price_sensitivity"}})
    assert canceled.status_code == 200
    assert canceled.get_json()["status"] == "canceled"
    assert_error(agent.post(f"/checkout_sessions/{sid}/cancel"), 405, "checkout_session_canceled")
    assert_error(agent.post(f"/checkout_sessions/{sid}", {"order_notes": "x"}), 405,
                 "checkout_session_canceled")
    assert_error(agent.complete(sid), 405, "checkout_session_canceled")
    got = client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert got.status_code == 200
    assert got.get_json()["status"] == "canceled"


def test_cancel_without_body(agent: Agent) -> None:
    sid = agent.create().get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}/cancel")
    assert response.status_code == 200
    assert response.get_json()["status"] == "canceled"


def test_cancel_replay_after_cancel_returns_original_200(agent: Agent) -> None:
    sid = agent.create().get_json()["id"]
    key = str(uuid.uuid4())
    first = agent.post(f"/checkout_sessions/{sid}/cancel", {}, key=key)
    assert first.status_code == 200
    replay = agent.post(f"/checkout_sessions/{sid}/cancel", {}, key=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["status"] == "canceled"


def test_complete_once_then_405_and_one_charge(tmp_path: pathlib.Path) -> None:
    processor = FakePaymentProcessor()
    app = build_app(tmp_path, payment_processor=processor)
    client = app.test_client()
    agent = Agent(client)
    sid = agent.ready_session()["id"]
    key = str(uuid.uuid4())
    done = agent.complete(sid, key=key)
    assert done.status_code == 200
    body = done.get_json()
    assert body["status"] == "completed"
    assert body["order"]["checkout_session_id"] == sid
    again = agent.complete(sid)
    assert_error(again, 405, "checkout_session_completed")
    again = agent.complete(sid, token="spt_other")
    assert_error(again, 405, "checkout_session_completed")
    replay = agent.complete(sid, key=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["order"]["id"] == body["order"]["id"]
    charges = processor.charges()
    assert len(charges) == 1
    total = {t_["type"]: t_["amount"] for t_ in body["totals"]}["total"]
    assert charges[0]["amount"] == total
    assert_error(agent.post(f"/checkout_sessions/{sid}/cancel"), 405, "checkout_session_completed")
    assert_error(agent.post(f"/checkout_sessions/{sid}", {"order_notes": "x"}), 405,
                 "checkout_session_completed")


def test_complete_on_not_ready_session_returns_message(agent: Agent) -> None:
    created = agent.create()
    assert created.get_json()["status"] == "not_ready_for_payment"
    sid = created.get_json()["id"]
    response = agent.complete(sid)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "not_ready_for_payment"
    assert any(m["type"] == "error" for m in body["messages"])


def test_expired_session(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SESSION_TTL=60)
    client = app.test_client()
    agent = Agent(client)
    session = agent.ready_session()
    sid = session["id"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    app.extensions["acp"].service.clock = lambda: later
    got = client.get(f"/checkout_sessions/{sid}", headers=agent.headers())
    assert got.status_code == 200
    assert got.get_json()["status"] == "expired"
    assert_error(agent.post(f"/checkout_sessions/{sid}", {"order_notes": "x"}), 405,
                 "checkout_session_expired")
    assert_error(agent.complete(sid), 405, "checkout_session_expired")
    assert_error(agent.post(f"/checkout_sessions/{sid}/cancel"), 405, "checkout_session_expired")


def test_expiry_applies_to_update_without_a_get_first(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SESSION_TTL=60)
    agent = Agent(app.test_client())
    sid = agent.create().get_json()["id"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    app.extensions["acp"].service.clock = lambda: later
    assert_error(agent.post(f"/checkout_sessions/{sid}", {"order_notes": "x"}), 405,
                 "checkout_session_expired")


def test_update_extends_expiry(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SESSION_TTL=60)
    client = app.test_client()
    agent = Agent(client)
    sid = agent.create().get_json()["id"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=45)
    app.extensions["acp"].service.clock = lambda: later
    updated = agent.post(f"/checkout_sessions/{sid}", {"order_notes": "still here"})
    assert updated.status_code == 200
    expires = dt.datetime.fromisoformat(updated.get_json()["expires_at"].replace("Z", "+00:00"))
    assert expires >= later + dt.timedelta(seconds=59)
    app.extensions["acp"].service.clock = lambda: later + dt.timedelta(seconds=30)
    assert client.get(f"/checkout_sessions/{sid}", headers=agent.headers()).get_json()["status"] != "expired"


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"currency":"usd","line_items":[{"id":"\\ud800"}],"capabilities":{}}', "lone surrogate"),
    (b'{"x":' + b"[" * 200 + b"]" * 200 + b"}", "too deep"),
    (b'{"currency":"usd","line_items":[{"id":"a","quantity":NaN}],"capabilities":{}}', "NaN"),
    ('{"currency":"usd","line_items":[{"id":"a"}],"capabilities":{}}'.encode("utf-16"), "UTF-16"),
    (b'\xef\xbb\xbf{"currency":"usd","line_items":[{"id":"a"}],"capabilities":{}}', "BOM"),
])
def test_bodies_that_are_not_plain_utf8_json_are_400(agent: Agent, raw: bytes, why: str) -> None:
    response = agent.client.post("/checkout_sessions", data=raw, headers=agent.headers())
    assert_error(response, 400, "invalid_json")


def test_encoded_bodies_are_415(agent: Agent) -> None:
    response = agent.client.post("/checkout_sessions", data=json.dumps(CREATE_BODY),
                                 headers={**agent.headers(), "Content-Encoding": "gzip"})
    assert_error(response, 415, "unsupported_media_type")


def test_integral_float_quantity_is_an_integer(agent: Agent) -> None:
    body = {**CREATE_BODY, "line_items": [{"id": "item_123", "quantity": 2.0}]}
    response = agent.post("/checkout_sessions", body)
    assert response.status_code == 201
    assert response.get_json()["line_items"][0]["quantity"] == 2
    body = {**CREATE_BODY, "line_items": [{"id": "item_123", "quantity": 2.5}]}
    assert_error(agent.post("/checkout_sessions", body), 400, "invalid_type",
                 param="$.line_items[0].quantity")


def test_first_bad_field_in_document_order(agent: Agent) -> None:
    response = agent.post("/checkout_sessions", {"currency": 5, "line_items": "x", "capabilities": 1})
    assert response.get_json()["param"] == "$.currency"
    response = agent.post("/checkout_sessions", {"capabilities": 1, "line_items": "x", "currency": 5})
    assert response.get_json()["param"] == "$.capabilities"


def test_metadata_errors_point_at_the_key(agent: Agent) -> None:
    session = agent.create().get_json()
    body = {"intent_trace": {"reason_code": "other", "metadata": {"ok": 1, "a.b c'": [1]}}}
    response = agent.post(f"/checkout_sessions/{session['id']}/cancel", body)
    error = assert_error(response, 400, "invalid_type")
    assert error["param"] == "$.intent_trace.metadata['a.b c\\'']"


def test_discovery_from_the_host_header_is_never_cached(client: FlaskClient) -> None:
    """Without ACP_API_BASE_URL the base URL comes from the request's Host: a
    shared cache must not serve one client's Host to everyone."""
    response = client.get("/.well-known/acp.json", headers={"Host": "evil.example"})
    assert response.get_json()["api_base_url"] == "http://evil.example"
    assert response.headers["Cache-Control"] == "no-store"


def test_options_is_a_json_405(agent: Agent) -> None:
    response = agent.client.options("/checkout_sessions", headers=agent.headers())
    assert_error(response, 405, "method_not_allowed")


def test_terminal_session_405_has_allow(agent: Agent) -> None:
    session = agent.create().get_json()
    agent.post(f"/checkout_sessions/{session['id']}/cancel")
    response = agent.post(f"/checkout_sessions/{session['id']}", {"line_items": [{"id": "item_123"}]})
    assert_error(response, 405, "checkout_session_canceled")
    assert response.headers["Allow"] == "GET"


def test_overlong_request_id_is_replaced(agent: Agent) -> None:
    headers = agent.headers(**{"Request-Id": "r" * 5000})
    response = agent.client.get("/checkout_sessions/cs_x", headers=headers)
    assert response.headers["Request-Id"].startswith("req_")


def test_body_locale_picks_the_language_without_accept_language(agent: Agent) -> None:
    body = agent.create(locale="fr-CA").get_json()
    assert body["totals"][1]["display_text"] == "Sous-total"
    response = agent.client.get(f"/checkout_sessions/{body['id']}",
                                headers={**agent.headers(), "Accept-Language": "de"})
    assert response.headers["Content-Language"] == "de"


def test_instrument_type_must_fit_the_handler(agent: Agent) -> None:
    session = agent.ready_session()
    body = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "bank", "credential": {"type": "spt", "token": "spt_1"}}}}
    response = agent.post(f"/checkout_sessions/{session['id']}/complete", body)
    assert_error(response, 400, "invalid_instrument_type", param="$.payment_data.instrument.type")


def test_digital_items_need_an_email(agent: Agent) -> None:
    body = agent.create([{"id": "ebook"}]).get_json()
    assert body["status"] == "not_ready_for_payment"
    assert [(m["code"], m["param"]) for m in body["messages"]] == [("missing", "$.buyer.email")]
    body = agent.post(f"/checkout_sessions/{body['id']}", {"buyer": {"email": "ada@example.com"}}).get_json()
    assert body["status"] == "ready_for_payment"
    assert body["messages"] == []


def test_replayed_405_keeps_its_allow_header(agent: Agent) -> None:
    """A stored 405 (a change to a terminal session) replays with ``Allow``."""
    sid = agent.ready_session()["id"]
    assert agent.post(f"/checkout_sessions/{sid}/cancel").status_code == 200
    key = str(uuid.uuid4())
    first = agent.post(f"/checkout_sessions/{sid}/cancel", key=key)
    again = agent.post(f"/checkout_sessions/{sid}/cancel", key=key)
    assert (first.status_code, again.status_code) == (405, 405)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Allow"] == first.headers["Allow"] == "GET"


@pytest.mark.parametrize("status", [408, 412, 429, 451])
def test_host_app_http_errors_keep_their_status(tmp_path: pathlib.Path, status: int) -> None:
    """A 4xx the host app raises on an ACP route (a rate limiter's 429...) keeps
    its status in the flat error shape: the agent decides whether to retry from it."""
    from flask import abort
    from flask import request

    app = build_app(tmp_path)

    @app.before_request
    def limit() -> None:
        if request.path.startswith("/checkout_sessions"):
            abort(status)

    response = Agent(app.test_client()).create()
    assert response.status_code == status
    body = response.get_json()
    assert body["type"] == "invalid_request"
    assert set(body) >= {"type", "code", "message"}


def test_routing_404_bounds_the_echoed_request_id(client: FlaskClient, agent: Agent) -> None:
    response = client.get("/checkout_sessions/x/y/z", headers=agent.headers(**{"Request-Id": "r" * 500}))
    assert response.status_code == 404
    assert response.headers["Request-Id"].startswith("req_")
    kept = client.get("/checkout_sessions/x/y/z", headers=agent.headers(**{"Request-Id": "req_mine"}))
    assert kept.headers["Request-Id"] == "req_mine"


@pytest.mark.parametrize("given", ["a" * 201, "bad id", "x\ty", "é"])
def test_an_unsafe_request_id_is_replaced_on_every_path(client: FlaskClient, given: str) -> None:
    """One bounded, printable ``Request-Id`` on every ACP route (checkout,
    discovery, inbound webhooks, routing errors)."""
    for response in (
        client.get("/checkout_sessions/cs_x", headers={**acp_headers(AGENT_KEY), "Request-Id": given}),
        client.get("/.well-known/acp.json", headers={"Request-Id": given}),
        client.post("/webhooks/stripe", data=b"{}", headers={"Request-Id": given}),
        client.get("/checkout_sessions/cs_x/nowhere", headers={"Request-Id": given}),
    ):
        assert response.headers.getlist("Request-Id") != [given]
        (value,) = response.headers.getlist("Request-Id")
        assert value.startswith("req_")
    good = client.get("/.well-known/acp.json", headers={"Request-Id": "agent-req-42"})
    assert good.headers.getlist("Request-Id") == ["agent-req-42"]


def test_hsts_is_sent_over_https_only(client: FlaskClient) -> None:
    secure = client.get("/.well-known/acp.json", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in client.get("/.well-known/acp.json").headers


def test_a_doubled_slash_is_a_json_404_not_an_html_redirect(client: FlaskClient) -> None:
    for path in ("/checkout_sessions//complete", "/checkout_sessions/cs_x//cancel"):
        response = client.post(path, data=json.dumps({}), headers=acp_headers(AGENT_KEY))
        assert response.status_code == 404, (path, response.status)
        assert response.mimetype == "application/json"
