"""ACP over MCP (ACP 2026-04-17 MCP binding), driven with the official MCP
SDK's own client over real HTTP.

The app serves ``/mcp`` (``ACP_MCP_ENABLED``) on a loopback werkzeug server;
``flask acp mcp`` runs as a subprocess for the standalone HTTP and stdio
servers. Every session result is validated against the official JSON Schema,
and every error's ``data`` against the schema's ``Error``. No mocks: the
embedded catalog, a real SQLite store, the fake payment processor.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import copy
import importlib.metadata
import json
import os
import pathlib
import select
import socket
import subprocess
import sys
import time
import typing as t
import uuid

import anyio
import httpx2
import jsonschema
import pytest
import requests
from flask import Flask
from mcp import Client
from mcp import MCPError
from mcp import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from flask_acp.mcp.tools import TOOLS
from flask_acp.testing import FakePaymentProcessor
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.spec import VERSION
from tests.spec import require_spec
from tests.spec import validate
from tests.test_webhooks import Receiver
from tests.test_webhooks import app_factory
from tests.test_webhooks import check_event

ROOT = pathlib.Path(__file__).resolve().parent.parent
CREATE = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}}
COMPLETE = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
    "type": "card", "credential": {"type": "spt", "token": "spt_123"}}}}
Modes = t.Literal["auto", "legacy"]


def mcp_examples() -> dict[str, t.Any]:
    path = require_spec() / VERSION / "examples" / "examples.mcp.agentic_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


def openrpc() -> dict[str, t.Any]:
    path = require_spec() / VERSION / "openrpc" / "openrpc.agentic_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


def checkout_examples() -> dict[str, t.Any]:
    path = require_spec() / VERSION / "examples" / "examples.agentic_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


#: the headers of a raw Streamable HTTP POST
WIRE = {"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"}


def rpc(name: str, arguments: t.Any, id_: int = 1) -> dict[str, t.Any]:
    """A raw ``tools/call`` JSON-RPC request."""
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


def wire_error(response: requests.Response, status: int, code: int) -> dict[str, t.Any]:
    """The JSON-RPC error of a raw answer: JSON (never text or HTML), the
    expected HTTP status and code, and ``data`` a valid ACP ``Error``; returns ``data``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    answer = response.json()
    error = answer["error"]
    assert error["code"] == code, error
    assert isinstance(error["data"], dict), error
    validate(error["data"], "Error")
    assert error["message"] == error["data"]["message"]
    for internal in ("pydantic", "validation error", "union["):
        assert internal not in response.text.lower()
    return t.cast(dict[str, t.Any], error["data"])


def meta(key: str | None = None, **extra: str) -> dict[str, str]:
    out = {"api_version": VERSION, **extra}
    if key is not None:
        out["idempotency_key"] = key
    return out


def session_of(result: CallToolResult) -> dict[str, t.Any]:
    """The session of a tool result: schema-valid, and the same JSON in the text block."""
    assert not result.is_error
    body = result.structured_content
    assert isinstance(body, dict)
    assert [c.type for c in result.content] == ["text"]
    assert json.loads(result.content[0].text) == body  # type: ignore[union-attr]
    validate(body, "CheckoutSessionWithOrder" if body.get("status") == "completed" else "CheckoutSession")
    return body


def acp_meta(result: CallToolResult) -> dict[str, t.Any]:
    assert result.meta is not None
    return t.cast(dict[str, t.Any], result.meta["acp"])


def totals(body: dict[str, t.Any]) -> dict[str, int]:
    return {entry["type"]: entry["amount"] for entry in body["totals"]}


class McpAgent:
    """An agent speaking MCP to ``url`` with the SDK's client (one connection)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, arguments: dict[str, t.Any]) -> CallToolResult:
        return await self.client.call_tool(tool, arguments)

    async def session(self, tool: str, arguments: dict[str, t.Any]) -> dict[str, t.Any]:
        return session_of(await self.call(tool, arguments))

    async def error(self, tool: str, arguments: dict[str, t.Any], code: int = -32000) -> dict[str, t.Any]:
        """The JSON-RPC error of a call: its code, message == data.message, and
        ``data`` a valid ACP ``Error``."""
        with pytest.raises(MCPError) as info:
            await self.call(tool, arguments)
        error = info.value.error
        assert error.code == code, error
        assert isinstance(error.data, dict), error
        validate(error.data, "Error")
        assert error.message == error.data["message"]
        return t.cast(dict[str, t.Any], error.data)

    async def create(self, payload: dict[str, t.Any] | None = None, key: str | None = None,
                     **extra: str) -> dict[str, t.Any]:
        return await self.session("create_checkout_session", {
            "meta": meta(key or str(uuid.uuid4()), **extra), "payload": payload or CREATE})

    async def get(self, sid: str) -> dict[str, t.Any]:
        return await self.session("get_checkout_session", {"meta": meta(), "id": sid})


@contextlib.asynccontextmanager
async def connect(url: str, key: str | None = AGENT_KEY, mode: Modes = "auto", *,
                  authorization: str | None = None) -> cabc.AsyncIterator[McpAgent]:
    """An SDK client session with ``Authorization: Bearer <key>`` (or the
    ``authorization`` header as given; neither: none)."""
    header = authorization or (f"Bearer {key}" if key else None)
    headers = {"Authorization": header} if header else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield McpAgent(client)


def run(main: t.Callable[[], t.Awaitable[None]]) -> None:
    anyio.run(main)


@pytest.fixture
def processor(tmp_path: pathlib.Path) -> FakePaymentProcessor:
    return FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))


@pytest.fixture
def app(tmp_path: pathlib.Path, processor: FakePaymentProcessor) -> Flask:
    return build_app(tmp_path, payment_processor=processor, ACP_MCP_ENABLED=True)


@pytest.fixture
def base_url(app: Flask) -> cabc.Iterator[str]:
    with serve_app(app) as url:
        yield url


@pytest.fixture
def url(base_url: str) -> str:
    return base_url + "/mcp"


@pytest.fixture
def rest(app: Flask) -> Agent:
    return Agent(app.test_client())


# --- the tools and their schemas ---------------------------------------------------------


def _strip_docs(schema: t.Any) -> t.Any:
    if isinstance(schema, dict):
        return {k: _strip_docs(v) for k, v in schema.items() if k not in ("description", "examples")}
    return schema


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_are_the_bindings_methods(url: str, app: Flask, mode: Modes) -> None:
    """tools/list gives the five OpenRPC methods, each with the binding's
    argument envelope: the same params, the same required ones, the binding's
    ``meta`` schema; the payload is an object (validated per version by the
    pipeline). Both MCP eras: the 2026 per-request envelope and the legacy
    initialize handshake."""
    spec = openrpc()
    meta_schema = spec["components"]["schemas"]["meta"]

    async def main() -> None:
        async with connect(url, mode=mode) as agent:
            listed = {tool.name: tool for tool in (await agent.client.list_tools()).tools}
        assert list(listed) == [m["name"] for m in spec["methods"]]
        for method in spec["methods"]:
            tool = listed[method["name"]]
            schema = tool.input_schema
            assert tool.description
            assert list(schema["properties"]) == [p["name"] for p in method["params"]]
            assert schema["required"] == [p["name"] for p in method["params"] if p.get("required")]
            assert _strip_docs(schema["properties"]["meta"]) == _strip_docs(meta_schema)
            assert schema["properties"]["meta"]["properties"]["api_version"]["examples"] == \
                list(app.extensions["acp"].settings.api_versions)
            if "payload" in schema["properties"]:
                definition = next(p for p in method["params"] if p["name"] == "payload")["schema"]["$ref"]
                assert schema["properties"]["payload"]["type"] == "object"
                assert definition.rsplit("/", 1)[1] in schema["properties"]["payload"]["description"]
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (method["name"] == "get_checkout_session")
            assert tool.annotations.destructive_hint is (method["name"] == "cancel_checkout_session")
        assert [spec.name for spec in TOOLS] == list(listed)

    run(main)


def test_every_example_request_fits_the_envelope() -> None:
    """The examples' arguments are valid under our input schemas (the envelope
    accepts what the binding sends; the payload is checked by the pipeline)."""
    from flask_acp.mcp.tools import input_schema
    from flask_acp.versions import VERSIONS

    specs = {spec.name: spec for spec in TOOLS}
    requests_ = {k: v for k, v in mcp_examples().items() if "method" in v}
    assert len(requests_) == 5
    for example in requests_.values():
        params = example["params"]
        assert example["method"] == "tools/call"
        jsonschema.validate(params["arguments"], input_schema(specs[params["name"]], [VERSIONS[VERSION]],
                                                              envelope_only=True))


def _branches(payload: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """The payload schema's alternatives: the newest served version's request
    schema first, then (when older versions are served too) any object."""
    return t.cast(list[dict[str, t.Any]], payload.get("anyOf", [payload]))


#: tool -> the spec's 2026-04-17 request examples of its REST operation
REQUEST_EXAMPLES = {
    "create_checkout_session": ["create_checkout_session_request",
                                "create_checkout_session_request_with_first_touch_attribution"],
    "update_checkout_session": ["update_checkout_session_request"],
    "complete_checkout_session": ["complete_checkout_session_request",
                                  "complete_checkout_session_request_seller_backed",
                                  "complete_checkout_session_request_with_last_touch_attribution",
                                  "complete_session_with_authentication_result_request",
                                  "complete_session_with_denied_authentication_request"],
    "cancel_checkout_session": ["cancel_checkout_session_request",
                                "cancel_checkout_session_request_timing_deferred"],
}


def test_payload_schemas_are_the_rest_request_schemas(url: str, rest: Agent) -> None:
    """``payload`` is described by the REST API's own request schemas of the
    newest served version (generated from the marshmallow schemas): the spec's
    2026-04-17 request examples fit, what REST refuses in 2026-04-17 does not,
    and an older version's body, which the REST API (and so the tool) serves,
    is not refused by a client that validates."""
    examples = checkout_examples()

    async def main() -> dict[str, t.Any]:
        async with connect(url) as agent:
            return {tool.name: tool for tool in (await agent.client.list_tools()).tools}

    tools = anyio.run(main)
    newest: dict[str, dict[str, t.Any]] = {}
    for name, names in REQUEST_EXAMPLES.items():
        payload = tools[name].input_schema["properties"]["payload"]
        jsonschema.Draft202012Validator.check_schema(payload)
        assert "meta.api_version" in payload["description"]
        newest[name] = _branches(payload)[0]
        assert VERSION in newest[name]["title"]
        for example in names:
            jsonschema.validate(examples[example], newest[name], cls=jsonschema.Draft202012Validator)
            jsonschema.validate(examples[example], payload, cls=jsonschema.Draft202012Validator)
    create = newest["create_checkout_session"]
    assert {"line_items", "currency", "capabilities"} <= set(create["required"])
    assert create["properties"]["line_items"]["items"]["required"] == ["id"]
    assert "interventions" in create["properties"]["capabilities"]["properties"]
    complete = newest["complete_checkout_session"]
    assert complete["required"] == ["payment_data"]
    assert {"handler_id", "instrument"} <= set(complete["properties"]["payment_data"]["required"])
    assert "reason_code" in newest["cancel_checkout_session"]["properties"]["intent_trace"]["required"]

    # not a bare object: a 2026-04-17 body REST refuses is refused here too
    bad = {"currency": "usd", "capabilities": {}}
    assert rest.post("/checkout_sessions", bad).status_code == 400
    assert not jsonschema.Draft202012Validator(create).is_valid(bad)
    # open for the older versions the app serves (validated server-side per meta.api_version)
    older = {"items": [{"id": "item_123", "quantity": 1}]}
    assert rest.post("/checkout_sessions", older, **{"API-Version": "2025-09-29"}).status_code == 201
    payload = tools["create_checkout_session"].input_schema["properties"]["payload"]
    assert jsonschema.Draft202012Validator(payload).is_valid(older)
    assert not jsonschema.Draft202012Validator(create).is_valid(older)


def test_one_served_version_gives_strict_payload_schemas(tmp_path: pathlib.Path) -> None:
    """An app serving 2026-04-17 only declares its request schemas as they
    are: an older shape is refused by a client that validates, as by the server."""
    from flask_acp.mcp.tools import Binding

    app = build_app(tmp_path, ACP_MCP_ENABLED=True, ACP_API_VERSIONS=[VERSION])
    binding = Binding(app.extensions["acp"].pipeline, url_prefix="", offload=False)
    payload = binding.input_schema("create_checkout_session")["properties"]["payload"]  # type: ignore[index]
    assert "anyOf" not in payload
    assert VERSION in payload["title"]
    validator = jsonschema.Draft202012Validator(payload)
    assert validator.is_valid(checkout_examples()["create_checkout_session_request"])
    assert not validator.is_valid({"items": [{"id": "item_123", "quantity": 1}]})


# --- a full purchase ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_full_purchase(url: str, processor: FakePaymentProcessor, mode: Modes) -> None:
    async def main() -> None:
        async with connect(url, mode=mode) as agent:
            created = await agent.call("create_checkout_session",
                                       {"meta": meta(str(uuid.uuid4())), "payload": CREATE})
            session = session_of(created)
            assert acp_meta(created)["http_status"] == 201
            sid = session["id"]
            assert session["status"] == "not_ready_for_payment"
            assert [(m["code"], m["param"]) for m in session["messages"]] == [
                ("missing", "$.fulfillment_details.address")]

            session = await agent.session("update_checkout_session", {
                "meta": meta(str(uuid.uuid4())), "id": sid,
                "payload": {"fulfillment_details": {"name": "Ada Lovelace", "email": "ada@example.com",
                                                    "address": ADDRESS}}})
            assert session["status"] == "ready_for_payment"
            session = await agent.session("update_checkout_session", {
                "meta": meta(str(uuid.uuid4())), "id": sid,
                "payload": {"selected_fulfillment_options": [
                    {"type": "shipping", "option_id": "fulfillment_option_456", "item_ids": ["item_123"]}]}})
            assert totals(session)["total"] == 830

            done = await agent.session("complete_checkout_session",
                                       {"meta": meta(str(uuid.uuid4())), "id": sid, "payload": COMPLETE})
            assert done["status"] == "completed"
            assert done["order"]["checkout_session_id"] == sid
            assert [c["amount"] for c in processor.charges()] == [830]

            fetched = await agent.get(sid)
            assert fetched["status"] == "completed"
            assert fetched["order"] == done["order"]
            # completed is terminal, over MCP as over REST (405 there)
            data = await agent.error("cancel_checkout_session", {"meta": meta(str(uuid.uuid4())), "id": sid})
            assert data["code"] == "checkout_session_completed"

    run(main)


def test_completion_sends_the_order_webhook(tmp_path: pathlib.Path) -> None:
    """Same webhooks: a session completed over MCP sends the signed
    ``order_create`` to the agent, as one completed over REST does."""
    receiver = Receiver()
    factory = app_factory(tmp_path)
    make = next(factory)
    try:
        app = make(receiver.url, ACP_MCP_ENABLED=True)

        async def main(url: str) -> None:
            async with connect(url) as agent:
                sid = (await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}}))["id"]
                done = await agent.session("complete_checkout_session",
                                           {"meta": meta(str(uuid.uuid4())), "id": sid, "payload": COMPLETE})
                assert done["status"] == "completed"
            event = check_event(receiver.wait_for(1)[0], "order_create")
            assert event["data"]["checkout_session_id"] == sid
            assert event["data"]["id"] == done["order"]["id"]

        with serve_app(app) as base:
            anyio.run(main, base + "/mcp")
    finally:
        next(factory, None)
        receiver.close()


# --- idempotency ---------------------------------------------------------------------------


def test_idempotent_replay_and_conflict(url: str, app: Flask, processor: FakePaymentProcessor) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            key = str(uuid.uuid4())
            first = await agent.call("create_checkout_session", {"meta": meta(key), "payload": CREATE})
            again = await agent.call("create_checkout_session", {"meta": meta(key), "payload": CREATE})
            assert session_of(again) == session_of(first)
            assert "idempotent_replayed" not in acp_meta(first)
            assert acp_meta(again)["idempotent_replayed"] is True
            assert acp_meta(again)["http_status"] == 201

            # same key, another payload: the REST 422 idempotency_conflict
            data = await agent.error("create_checkout_session",
                                     {"meta": meta(key), "payload": {**CREATE, "currency": "eur"}})
            assert data["code"] == "idempotency_conflict"
            assert data["type"] == "invalid_request"

            sid = session_of(first)["id"]
            await agent.session("update_checkout_session", {
                "meta": meta(str(uuid.uuid4())), "id": sid,
                "payload": {"fulfillment_details": {"address": ADDRESS}}})
            key = str(uuid.uuid4())
            paid = await agent.call("complete_checkout_session",
                                    {"meta": meta(key), "id": sid, "payload": COMPLETE})
            replay = await agent.call("complete_checkout_session",
                                      {"meta": meta(key), "id": sid, "payload": COMPLETE})
            assert session_of(replay) == session_of(paid)
            assert acp_meta(replay)["idempotent_replayed"] is True
            assert len(processor.charges()) == 1

            # without a key (the binding makes it optional) a call is its own request: never replayed
            one = await agent.session("create_checkout_session", {"meta": meta(), "payload": CREATE})
            two = await agent.session("create_checkout_session", {"meta": meta(), "payload": CREATE})
            assert one["id"] != two["id"]

    run(main)


def test_keys_are_scoped_as_rest_scopes_them(url: str, rest: Agent) -> None:
    """Scope = agent + REST path: a key sent over REST and over MCP for the same
    operation on the same path is one key (same body: replay; another: 422);
    another agent, or another path, is another scope."""

    async def main() -> None:
        key = str(uuid.uuid4())
        response = rest.post("/checkout_sessions", CREATE, key=key)
        assert response.status_code == 201
        async with connect(url) as agent:
            replay = await agent.call("create_checkout_session", {"meta": meta(key), "payload": CREATE})
            assert session_of(replay) == response.get_json()
            assert acp_meta(replay)["idempotent_replayed"] is True
            data = await agent.error("create_checkout_session",
                                     {"meta": meta(key), "payload": {**CREATE, "currency": "eur"}})
            assert data["code"] == "idempotency_conflict"
            sid = response.get_json()["id"]
            # another path (update of that session) with the same key: a request of its own
            updated = await agent.session("update_checkout_session",
                                          {"meta": meta(key), "id": sid, "payload": {"fulfillment_details": {
                                              "address": ADDRESS}}})
            assert updated["status"] == "ready_for_payment"
        async with connect(url, key=OTHER_KEY) as other:
            mine = await other.create(CREATE, key=key)
            assert mine["id"] != sid
        # and an MCP key replays over REST
        key = str(uuid.uuid4())
        async with connect(url) as agent:
            created = await agent.create(CREATE, key=key)
        again = rest.post("/checkout_sessions", CREATE, key=key)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == created

    run(main)


# --- REST <-> MCP -----------------------------------------------------------------------------


def test_rest_and_mcp_read_each_others_sessions(url: str, rest: Agent) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            made_over_mcp = await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}})
            over_rest = rest.client.get(f"/checkout_sessions/{made_over_mcp['id']}", headers=rest.headers())
            assert over_rest.status_code == 200
            assert over_rest.get_json() == made_over_mcp

            made_over_rest = rest.create().get_json()
            assert await agent.get(made_over_rest["id"]) == made_over_rest
            # a change over REST is seen over MCP and the other way round
            rest.post(f"/checkout_sessions/{made_over_rest['id']}",
                      {"fulfillment_details": {"address": ADDRESS}})
            assert (await agent.get(made_over_rest["id"]))["status"] == "ready_for_payment"
            await agent.session("cancel_checkout_session",
                                {"meta": meta(str(uuid.uuid4())), "id": made_over_mcp["id"]})
            fetched = rest.client.get(f"/checkout_sessions/{made_over_mcp['id']}", headers=rest.headers())
            assert fetched.get_json()["status"] == "canceled"
        # sessions belong to the agent that made them, whatever the binding
        async with connect(url, key=OTHER_KEY) as other:
            data = await other.error("get_checkout_session", {"meta": meta(), "id": made_over_mcp["id"]})
            assert data["code"] == "checkout_session_not_found"

    run(main)


def _comparable(session: t.Any) -> t.Any:
    """A session without what differs between two equal creates: ids, times,
    and the stock left (the first holds a unit)."""
    if isinstance(session, dict):
        return {k: _comparable(v) for k, v in session.items()
                if k not in ("id", "created_at", "updated_at", "expires_at", "available_quantity")}
    if isinstance(session, list):
        return [_comparable(v) for v in session]
    return session


def test_every_served_version_is_served_over_mcp(url: str, app: Flask, rest: Agent) -> None:
    """For each version the REST API serves, the same payload gives the same
    answer over MCP as over REST (a session, or the same error)."""
    versions = app.extensions["acp"].settings.api_versions
    assert VERSION in versions

    async def main() -> None:
        async with connect(url) as agent:
            # listed first: the SDK's client then checks every result against its outputSchema
            tools = {tool.name: tool for tool in (await agent.client.list_tools()).tools}
            output_schema = tools["create_checkout_session"].output_schema
            assert output_schema is not None
            assert all(tool.output_schema == output_schema for tool in tools.values())
            for version in versions:
                response = rest.post("/checkout_sessions", CREATE, **{"API-Version": version})
                arguments = {"meta": {"api_version": version, "idempotency_key": str(uuid.uuid4())},
                             "payload": CREATE}
                if response.status_code < 400:
                    result = await agent.call("create_checkout_session", arguments)
                    body = result.structured_content
                    assert isinstance(body, dict)
                    assert _comparable(body) == _comparable(response.get_json())
                    jsonschema.validate(body, output_schema, cls=jsonschema.Draft202012Validator)
                    sid = body["id"]
                    fetched = await agent.call("get_checkout_session", {
                        "meta": {"api_version": version}, "id": sid})
                    jsonschema.validate(fetched.structured_content, output_schema,
                                        cls=jsonschema.Draft202012Validator)
                else:
                    with pytest.raises(MCPError) as info:
                        await agent.call("create_checkout_session", arguments)
                    assert info.value.error.code == -32000
                    want = response.get_json()
                    if "param" in want:
                        want["param"] = "$.payload" + want["param"][1:]
                    assert info.value.error.data == want
            data = await agent.error("create_checkout_session",
                                     {"meta": {"api_version": "2024-01-01"}, "payload": CREATE})
            assert data["code"] == "unsupported_api_version"
            assert data["supported_versions"] == list(versions)

    run(main)


def test_accept_language(url: str) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            result = await agent.call("create_checkout_session", {
                "meta": meta(str(uuid.uuid4()), accept_language="fr-CA, fr;q=0.9"), "payload": CREATE})
            assert acp_meta(result)["content_language"] == "fr"
            english = await agent.call("create_checkout_session",
                                       {"meta": meta(str(uuid.uuid4())), "payload": CREATE})
            assert acp_meta(english)["content_language"] == "en"
            french_text = session_of(result)["messages"][0]["content"]
            assert french_text != session_of(english)["messages"][0]["content"]
            echoed = await agent.call("get_checkout_session",
                                      {"meta": meta(request_id="trace-42"), "id": session_of(result)["id"]})
            assert acp_meta(echoed)["request_id"] == "trace-42"

    run(main)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_session_is_a_404_error(url: str, rest: Agent) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            data = await agent.error("get_checkout_session", {"meta": meta(), "id": "cs_missing"})
        response = rest.client.get("/checkout_sessions/cs_missing", headers=rest.headers())
        assert response.status_code == 404
        assert data == response.get_json()
        assert data["code"] == "checkout_session_not_found"

    run(main)


@pytest.mark.parametrize(("tool", "arguments", "param", "code"), [
    ("create_checkout_session", {"payload": CREATE}, "$.meta", "invalid"),
    ("create_checkout_session", {"meta": {}, "payload": CREATE}, "$.meta.api_version", "invalid"),
    ("create_checkout_session", {"meta": {"api_version": 20260417}, "payload": CREATE},
     "$.meta.api_version", "invalid_type"),
    ("create_checkout_session", {"meta": meta()}, "$.payload", "invalid"),
    ("update_checkout_session", {"meta": meta(), "id": "cs_1", "payload": "{}"}, "$.payload", "invalid_type"),
    ("get_checkout_session", {"meta": meta()}, "$.id", "invalid"),
    ("get_checkout_session", {"meta": meta(), "id": ""}, "$.id", "invalid"),
    ("get_checkout_session", {"meta": meta(), "id": "cs_1/cancel"}, "$.id", "invalid"),
    ("update_checkout_session", {"meta": meta(), "id": "/", "payload": {}}, "$.id", "invalid"),
    ("get_checkout_session", {"meta": meta(), "id": "cs_1", "authorization": f"Bearer {AGENT_KEY}"},
     "$.authorization", "invalid"),
    ("complete_checkout_session", {"meta": meta(), "id": "cs_1", "payload": COMPLETE, "extra": 1},
     "$.extra", "invalid"),
])
def test_envelope_problems_are_invalid_params(url: str, tool: str, arguments: dict[str, t.Any],
                                              param: str, code: str) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            data = await agent.error(tool, arguments, code=-32602)
        assert data["param"] == param
        assert data["code"] == code
        assert data["type"] == "invalid_request"

    run(main)


def test_a_session_id_is_one_path_segment(url: str, processor: FakePaymentProcessor) -> None:
    """An ``id`` with a ``/`` is refused (-32602 at ``$.id``), as REST cannot
    route one: ``update`` of ``cs_X/complete`` would otherwise share its
    idempotency scope (the REST path) with ``complete`` of ``cs_X``, and a
    real complete with the same key would replay the update's 404."""

    async def main() -> None:
        async with connect(url) as agent:
            sid = (await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}}))["id"]
            key = str(uuid.uuid4())
            data = await agent.error("update_checkout_session", {
                "meta": meta(key), "id": f"{sid}/complete", "payload": COMPLETE}, code=-32602)
            assert data["param"] == "$.id"
            assert data["type"] == "invalid_request"
            done = await agent.session("complete_checkout_session",
                                       {"meta": meta(key), "id": sid, "payload": COMPLETE})
            assert done["status"] == "completed"
            assert len(processor.charges()) == 1

    run(main)


def test_unknown_tool_is_invalid_params(url: str) -> None:
    async def main() -> None:
        async with connect(url) as agent:
            data = await agent.error("delete_checkout_session", {"meta": meta()}, code=-32602)
        assert data["code"] == "unknown_tool"

    run(main)


def test_acp_errors_are_server_errors_with_the_acp_error(url: str, rest: Agent) -> None:
    """Every pipeline error is -32000 with the REST body as ``data``; a
    ``param`` points into the arguments (``$.payload...``)."""

    async def main() -> None:
        async with connect(url) as agent:
            bad = {**CREATE, "currency": 5}
            data = await agent.error("create_checkout_session",
                                     {"meta": meta(str(uuid.uuid4())), "payload": bad})
            response = rest.post("/checkout_sessions", bad)
            assert response.status_code == 400
            assert data == {**response.get_json(), "param": "$.payload.currency"}

            data = await agent.error("create_checkout_session",
                                     {"meta": meta("k" * 256), "payload": CREATE})
            assert data["code"] == "invalid_idempotency_key"

            sid = (await agent.create())["id"]
            await agent.session("cancel_checkout_session", {
                "meta": meta(), "id": sid, "payload": {"intent_trace": {"reason_code": "other"}}})
            data = await agent.error("update_checkout_session",
                                     {"meta": meta(), "id": sid,
                                      "payload": {"line_items": [{"id": "item_456"}]}})
            assert data["code"] == "checkout_session_canceled"

            data = await agent.error("complete_checkout_session", {
                "meta": meta(), "id": sid,
                "payload": {"payment_data": {"handler_id": "card_tokenized",
                                             "instrument": {"type": "card"}}}})
            assert data["param"].startswith("$.payload.payment_data.instrument")

    run(main)


def test_errors_on_the_wire(base_url: str) -> None:
    """The JSON-RPC error objects as they travel (no SDK in between)."""
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "create_checkout_session",
        "arguments": {"meta": meta(str(uuid.uuid4())), "payload": {"line_items": [{"id": "item_123"}],
                                                                    "capabilities": {}}}}}
    response = requests.post(base_url + "/mcp", json=body, headers=headers, timeout=30)
    assert response.status_code == 200
    answer = response.json()
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32000
    validate(answer["error"]["data"], "Error")
    assert answer["error"]["data"]["param"] == "$.payload.currency"
    assert answer["error"]["message"] == answer["error"]["data"]["message"]
    assert "result" not in answer


def test_not_json_rpc_is_answered_in_json_rpc(base_url: str) -> None:
    """What the SDK would answer with library text gets a JSON-RPC error of
    ours: a batch (not served) -32600, JSON that is no JSON-RPC message
    -32600, a body that is not JSON (or sends a key twice, as REST refuses)
    -32700; each with an ACP Error as ``data``. Both MCP eras (with and without
    the 2026 ``MCP-Protocol-Version`` header)."""
    url = base_url + "/mcp"
    call = rpc("get_checkout_session", {"meta": meta(), "id": "cs_1"})
    for era in ({}, {"MCP-Protocol-Version": "2026-07-28"}):
        headers = {**WIRE, **era}
        response = requests.post(url, json=[call, {**call, "id": 2}], headers=headers, timeout=30)
        data = wire_error(response, 400, -32600)
        assert data["param"] == "$"
        response = requests.post(url, json={"jsonrpc": "2.0", "id": 3, "params": {}}, headers=headers,
                                 timeout=30)
        wire_error(response, 400, -32600)
        for garbage in (b"{", b"", b'{"jsonrpc": "2.0", "id": 1, "id": 2, "method": "ping"}'):
            response = requests.post(url, data=garbage, headers=headers, timeout=30)
            data = wire_error(response, 400, -32700)
            assert data["code"] == "invalid_json"


def test_arguments_that_are_not_an_object(base_url: str) -> None:
    """``arguments`` that is not an object is invalid params (-32602) with an
    ACP Error (``param`` ``$``: the arguments themselves), not the SDK's empty ``data``."""
    response = requests.post(base_url + "/mcp", json=rpc("get_checkout_session", [1]), headers=WIRE,
                             timeout=30)
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == -32602
    validate(error["data"], "Error")
    assert error["data"]["param"] == "$"
    assert error["data"]["type"] == "invalid_request"
    assert error["data"]["code"] == "invalid_type"
    # params that do not fit tools/call at all: -32602 with an ACP Error too
    response = requests.post(base_url + "/mcp", headers=WIRE, timeout=30,
                             json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 5}})
    error = response.json()["error"]
    assert error["code"] == -32602
    validate(error["data"], "Error")


def test_the_endpoint_answers_json_at_its_edges(base_url: str) -> None:
    """``/mcp/`` is the endpoint too (not the host's HTML 404); a body that
    is not ``application/json`` is a 415 JSON-RPC error; other methods 405."""
    body = rpc("get_checkout_session", {"meta": meta(), "id": "cs_1"})
    response = requests.post(base_url + "/mcp/", json=body, headers=WIRE, timeout=30)
    assert response.status_code == 200
    assert response.json()["error"]["data"]["code"] == "checkout_session_not_found"
    response = requests.post(base_url + "/mcp", data=json.dumps(body), timeout=30,
                             headers={**WIRE, "Content-Type": "text/plain"})
    assert wire_error(response, 415, -32000)["code"] == "unsupported_media_type"
    response = requests.put(base_url + "/mcp", json=body, headers=WIRE, timeout=30)
    assert wire_error(response, 405, -32000)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


# --- authentication and transport ---------------------------------------------------------------


def _refused(group: BaseException) -> MCPError:
    """The MCPError the SDK client raised (its task groups wrap it)."""
    errors: list[BaseException] = [group]
    while errors:
        error = errors.pop()
        if isinstance(error, MCPError):
            return error
        errors.extend(getattr(error, "exceptions", ()))  # an exception group
        if error.__context__ is not None:
            errors.append(error.__context__)
    raise AssertionError(f"no MCPError in {group!r}")


async def _assert_unauthorized(url: str, authorization: str | None) -> None:
    """The SDK client cannot even connect: it surfaces the 401's JSON-RPC
    error, ``data`` the ACP ``unauthorized`` Error."""
    with pytest.raises(BaseException) as info:  # noqa: PT011 - MCPError inside the SDK's exception groups
        async with connect(url, key=None, authorization=authorization) as agent:
            await agent.client.list_tools()
    error = _refused(info.value).error
    assert error.code == -32000
    validate(error.data, "Error")
    assert error.data["code"] == "unauthorized"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-key-of-any-agent", f"Basic {AGENT_KEY}",
                                           f"{AGENT_KEY}"])
def test_bad_auth_is_refused_before_any_call(url: str, authorization: str | None) -> None:
    """No key, an unknown key, the right key in another scheme: 401 before
    any JSON-RPC is read (the key never travels in tool arguments)."""
    run(lambda: _assert_unauthorized(url, authorization))
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if authorization:
        headers["Authorization"] = authorization
    response = requests.post(url, headers=headers, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_checkout_session", "arguments": {"meta": meta(), "id": "cs_1"}}})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == -32000
    validate(error["data"], "Error")
    assert error["data"]["code"] == "unauthorized"


def test_rotated_key_and_other_agent_authenticate(url: str) -> None:
    async def main() -> None:
        async with connect(url, key=OTHER_KEY) as other:
            assert (await other.create())["status"] == "not_ready_for_payment"

    run(main)


def test_get_is_405_and_large_bodies_413(url: str) -> None:
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "Accept": "application/json, text/event-stream"}
    response = requests.get(url, headers=headers, timeout=30)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    response = requests.post(url, data=b" " * 70000, timeout=30,
                             headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["data"]["code"] == "payload_too_large"


def test_plain_http_is_refused_outside_testing(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_MCP_ENABLED=True, TESTING=False)
    with serve_app(app) as base:
        response = requests.post(base + "/mcp", json={}, timeout=30, headers={
            "Authorization": f"Bearer {AGENT_KEY}", "Accept": "application/json, text/event-stream"})
    assert response.status_code == 403
    assert response.json()["error"]["data"]["code"] == "https_required"


# --- the spec's MCP examples ------------------------------------------------------------------


def test_the_spec_mcp_examples(url: str, rest: Agent, processor: FakePaymentProcessor) -> None:
    """Every request of ``examples.mcp.agentic_checkout.json``, sent as
    published (only the example session id replaced by ours). Our catalog is
    the examples' (``tests/data``: item_123 $3.00, shipping $1.00 / $5.00, 10 %
    tax in CA), so the results carry the examples' amounts. Two requests are
    not valid 2026-04-17 payloads (update nests ``shipping``; complete's
    instrument lacks ``type`` and ``credential``): they get the error REST
    gives the same body, then their schema-valid form goes through."""
    examples = mcp_examples()

    def arguments(name: str, sid: str | None = None) -> dict[str, t.Any]:
        params = copy.deepcopy(examples[name]["params"])
        assert params["name"] == name.removesuffix("_request")
        if sid is not None:
            assert params["arguments"]["id"] == "checkout_session_123"
            params["arguments"]["id"] = sid
        return t.cast(dict[str, t.Any], params["arguments"])

    def expected(name: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], examples[name]["result"])

    def same_totals(got: dict[str, t.Any], want: dict[str, t.Any]) -> None:
        assert {k: totals(got)[k] for k in totals(want)} == totals(want)

    async def main() -> None:
        async with connect(url) as agent:
            # create, as published
            session = await agent.session("create_checkout_session",
                                          arguments("create_checkout_session_request"))
            want = expected("create_checkout_session_response")
            sid = session["id"]
            assert session["status"] == want["status"] == "ready_for_payment"
            assert [(li["item"]["id"], li["quantity"], li["unit_amount"], li["name"])
                    for li in session["line_items"]] == [
                (li["item"]["id"], li["quantity"], li["unit_amount"], li["name"])
                for li in want["line_items"]]
            assert {o["id"] for o in session["fulfillment_options"]} == {
                o["id"] for o in want["fulfillment_options"]}
            assert session["fulfillment_details"] == want["fulfillment_details"]
            same_totals(session, want)

            # get
            fetched = await agent.session("get_checkout_session",
                                          arguments("get_checkout_session_request", sid))
            assert fetched == session
            same_totals(fetched, expected("get_checkout_session_response"))
            # the example's own id is no session of ours
            data = await agent.error("get_checkout_session", arguments("get_checkout_session_request"))
            assert data["code"] == "checkout_session_not_found"

            # update, as published: refused as REST refuses the body
            args = arguments("update_checkout_session_request", sid)
            data = await agent.error("update_checkout_session", args)
            response = rest.post(f"/checkout_sessions/{sid}", args["payload"])
            assert response.status_code == 400
            assert data == {**response.get_json(), "param": "$.payload" + response.get_json()["param"][1:]}
            assert data["param"].startswith("$.payload.selected_fulfillment_options[0]")
            option = args["payload"]["selected_fulfillment_options"][0]
            args["payload"]["selected_fulfillment_options"][0] = {"type": option["type"],
                                                                  **option["shipping"]}
            validate(args["payload"], "CheckoutSessionUpdateRequest")
            updated = await agent.session("update_checkout_session", args)
            want = expected("update_checkout_session_response")
            assert updated["status"] == want["status"]
            assert updated["selected_fulfillment_options"] == want["selected_fulfillment_options"]
            same_totals(updated, want)

            # complete, as published: refused as REST refuses it, nothing charged
            args = arguments("complete_checkout_session_request", sid)
            data = await agent.error("complete_checkout_session", args)
            response = rest.post(f"/checkout_sessions/{sid}/complete", args["payload"])
            assert response.status_code == 400
            assert data == {**response.get_json(), "param": "$.payload" + response.get_json()["param"][1:]}
            assert processor.charges() == []
            token = args["payload"]["payment_data"]["instrument"].pop("token")
            # ``tok_visa_4242`` is a card token, not a delegated one (spt_/vt_): an SPT stands in
            args["payload"]["payment_data"]["instrument"] = {
                "type": "card", "credential": {"type": "spt", "token": "spt_" + token.removeprefix("tok_")}}
            validate(args["payload"], "CheckoutSessionCompleteRequest")
            args["meta"]["idempotency_key"] += "-fixed"  # a new request: the first key saw the other body
            done = await agent.session("complete_checkout_session", args)
            want = expected("complete_checkout_session_response")
            assert done["status"] == want["status"] == "completed"
            assert done["order"]["checkout_session_id"] == sid
            assert done["buyer"] == args["payload"]["buyer"]
            same_totals(done, want)
            assert [c["amount"] for c in processor.charges()] == [830]

            # cancel, as published, on another session
            other = (await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}}))["id"]
            canceled = await agent.session("cancel_checkout_session",
                                           arguments("cancel_checkout_session_request", other))
            assert canceled["status"] == expected("cancel_checkout_session_response")["status"] == "canceled"

            # error_invalid_request: a create without currency
            want_error = examples["error_invalid_request"]["error"]
            payload = {k: v for k, v in arguments("create_checkout_session_request")["payload"].items()
                       if k != "currency"}
            data = await agent.error("create_checkout_session", {"meta": meta(str(uuid.uuid4())),
                                                                 "payload": payload})
            assert want_error["code"] == -32000
            assert data["type"] == want_error["data"]["type"]
            assert data["param"] == want_error["data"]["param"] == "$.payload.currency"

            # error_payment_declined: the same -32000 envelope shape; a decline
            # itself is answered as REST answers it (200: the session with a
            # payment_declined message), see the README
            want_error = examples["error_payment_declined"]["error"]
            assert want_error["code"] == -32000
            validate(want_error["data"], "Error")
            third = (await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}}))["id"]
            declined = await agent.session("complete_checkout_session", {
                "meta": meta(str(uuid.uuid4())), "id": third,
                "payload": {"payment_data": {"handler_id": "card_tokenized", "instrument": {
                    "type": "card", "credential": {"type": "spt", "token": "spt_decline"}}}}})
            assert declined["status"] == "ready_for_payment"
            assert [m["code"] for m in declined["messages"]] == [want_error["data"]["code"]]

    run(main)


# --- configuration and discovery ------------------------------------------------------------


def test_discovery_lists_mcp_only_when_served(tmp_path: pathlib.Path) -> None:
    on = build_app(tmp_path / "on", ACP_MCP_ENABLED=True).test_client().get("/.well-known/acp.json")
    off = build_app(tmp_path / "off").test_client().get("/.well-known/acp.json")
    assert on.get_json()["transports"] == ["rest", "mcp"]
    assert off.get_json()["transports"] == ["rest"]
    app = build_app(tmp_path / "off2")
    with serve_app(app) as base:
        assert requests.post(base + "/mcp", json={}, timeout=30).status_code == 404


def test_custom_path(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_MCP_ENABLED=True, ACP_MCP_PATH="/agents/mcp", ACP_URL_PREFIX="/acp")

    async def main(url: str) -> None:
        async with connect(url) as agent:
            sid = (await agent.create())["id"]
        rest = Agent(app.test_client())
        assert rest.client.get(f"/acp/checkout_sessions/{sid}", headers=rest.headers()).status_code == 200

    with serve_app(app) as base:
        anyio.run(main, base + "/agents/mcp")
    with pytest.raises(RuntimeError, match="ACP_MCP_PATH"):
        build_app(tmp_path / "bad", ACP_MCP_ENABLED=True, ACP_MCP_PATH="mcp/")


def _without_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "mcp":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_missing_sdk_is_one_clear_line(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_sdk(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path / "a", ACP_MCP_ENABLED=True)
    assert "pip install 'flask-acp[mcp]'" in str(info.value)
    app = build_app(tmp_path / "b")  # not enabled: no SDK needed
    result = app.test_cli_runner().invoke(args=["acp", "mcp", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.strip() == \
        "Error: ACP over MCP needs the MCP SDK (mcp>=2.3): pip install 'flask-acp[mcp]'"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--stdio"], {}, "ACP_MCP_API_KEY"),
    (["--stdio"], {"ACP_MCP_API_KEY": "nobody-has-this-key-000"}, "not an API key of any agent"),
    (["--host", "0.0.0.0"], {}, "refusing plain HTTP"),  # noqa: S104 - refused, never bound
])
def test_cli_refuses(app: Flask, args: list[str], env: dict[str, str], message: str) -> None:
    result = app.test_cli_runner().invoke(args=["acp", "mcp", *args], env=env)
    assert result.exit_code == 1
    assert message in result.output


# --- standalone servers: flask acp mcp --port N, --stdio --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flask_env(tmp_path: pathlib.Path, config: dict[str, t.Any] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(ACP_TEST_DIR=str(tmp_path), FLASK_APP="tests.gunicorn_app:create_app",
               PYTHONPATH=str(ROOT), ACP_TEST_CONFIG=json.dumps(config or {}))
    return env


@contextlib.contextmanager
def standalone(tmp_path: pathlib.Path, config: dict[str, t.Any] | None = None) -> cabc.Iterator[str]:
    """``flask acp mcp --port N`` over the app of ``tests/gunicorn_app.py``
    (with ``config`` on top); yields its endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flask", "acp", "mcp", "--port", str(port)],
                            cwd=ROOT, env=_flask_env(tmp_path, config), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"flask acp mcp did not start: {output}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _same_store_app(tmp_path: pathlib.Path, config: dict[str, t.Any] | None = None) -> Flask:
    os.environ["ACP_TEST_DIR"] = str(tmp_path)
    os.environ["ACP_TEST_CONFIG"] = json.dumps(config or {})
    try:
        from tests.gunicorn_app import create_app

        app = create_app()
    finally:
        del os.environ["ACP_TEST_DIR"]
        del os.environ["ACP_TEST_CONFIG"]
    return app


def test_standalone_http_server(tmp_path: pathlib.Path) -> None:
    """``flask acp mcp --port N``: another process, the same store: its
    sessions are read over REST by the app, and the other way round."""
    rest = Agent(_same_store_app(tmp_path).test_client())

    async def main(url: str) -> None:
        async with connect(url) as agent:
            created = await agent.create({**CREATE, "fulfillment_details": {"address": ADDRESS}})
            over_rest = rest.client.get(f"/checkout_sessions/{created['id']}", headers=rest.headers())
            assert over_rest.get_json() == created
            done = await agent.session("complete_checkout_session",
                                       {"meta": meta(str(uuid.uuid4())), "id": created["id"],
                                        "payload": COMPLETE})
            assert done["status"] == "completed"
            made_over_rest = rest.create().get_json()
            assert await agent.get(made_over_rest["id"]) == made_over_rest
        await _assert_unauthorized(url, "Bearer not-a-key-of-any-agent")

    with standalone(tmp_path) as url:
        anyio.run(main, url)
        # its edges answer JSON-RPC errors too, never the SDK's or Starlette's plain text
        body = rpc("get_checkout_session", {"meta": meta(), "id": "cs_1"})
        response = requests.post(url, data=json.dumps(body), timeout=30,
                                 headers={**WIRE, "Content-Type": "text/plain"})
        assert wire_error(response, 415, -32000)["code"] == "unsupported_media_type"
        response = requests.post(url, data=b" " * 70000, headers=WIRE, timeout=30)
        assert wire_error(response, 413, -32000)["code"] == "payload_too_large"

        def chunks() -> cabc.Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(70):
                yield b" " * 1000

        response = requests.post(url, data=chunks(), headers=WIRE, timeout=30)
        assert wire_error(response, 413, -32000)["code"] == "payload_too_large"
        response = requests.post(url, json=[body], headers=WIRE, timeout=30)
        wire_error(response, 400, -32600)
        response = requests.post(url + "/", json=body, headers=WIRE, timeout=30, allow_redirects=False)
        assert response.status_code == 200
        assert response.json()["error"]["data"]["code"] == "checkout_session_not_found"
        response = requests.post(url.removesuffix("/mcp") + "/elsewhere", json=body, headers=WIRE, timeout=30)
        assert wire_error(response, 404, -32000)["code"] == "not_found"
        response = requests.get(url, headers=WIRE, timeout=30)
        assert wire_error(response, 405, -32000)["code"] == "method_not_allowed"


#: (forwarded headers from 127.0.0.1) -> served? for each transport configuration
TRANSPORT_CASES: list[tuple[dict[str, t.Any], list[tuple[dict[str, str], bool]]]] = [
    ({"ACP_TRUSTED_PROXY_HOPS": 1}, [
        ({"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.5"}, False),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}, True),
        # the proxy's own hop is the one trusted
        ({"X-Forwarded-Proto": "https, http", "X-Forwarded-For": "127.0.0.1, 203.0.113.5"}, False),
        # plain HTTP from a loopback client: ACP_ALLOW_INSECURE_LOOPBACK (on in this app)
        ({"X-Forwarded-Proto": "http", "X-Forwarded-For": "127.0.0.1"}, True),
        ({}, False),  # a proxy that says nothing: refused
    ]),
    ({"ACP_ALLOW_INSECURE_LOOPBACK": False}, [
        ({}, False),
        # no trusted proxy: X-Forwarded-* are the client's own words
        ({"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}, False),
    ]),
]


@pytest.mark.parametrize(("config", "cases"), TRANSPORT_CASES)
def test_standalone_server_checks_https_per_request(tmp_path: pathlib.Path, config: dict[str, t.Any],
                                                    cases: list[tuple[dict[str, str], bool]]) -> None:
    """``flask acp mcp --port N`` applies the REST API's transport rule to
    every request (HTTPS outside debug/testing; behind ``ACP_TRUSTED_PROXY_HOPS``
    proxies the forwarded scheme and address; plain HTTP from loopback only
    with ``ACP_ALLOW_INSECURE_LOOPBACK``): the same requests are refused (403
    ``https_required``, as a JSON-RPC error) or served as REST refuses or serves them."""
    rest = Agent(_same_store_app(tmp_path, config).test_client())
    body = rpc("get_checkout_session", {"meta": meta(), "id": "cs_missing"})
    with standalone(tmp_path, config) as url:
        for headers, served in cases:
            over_rest = rest.client.get("/checkout_sessions/cs_missing",
                                        headers={**rest.headers(), **headers},
                                        environ_base={"REMOTE_ADDR": "127.0.0.1"})
            assert over_rest.status_code == (404 if served else 403), headers
            response = requests.post(url, json=body, headers={**WIRE, **headers}, timeout=30)
            if served:
                assert response.status_code == 200, (headers, response.text)
                assert response.json()["error"]["data"]["code"] == "checkout_session_not_found"
            else:
                assert wire_error(response, 403, -32000)["code"] == "https_required", headers


def test_stdio_garbage_line_is_a_parse_error(tmp_path: pathlib.Path) -> None:
    """A line that is not JSON gets -32700 (id null), one that is no JSON-RPC
    message -32600; the server goes on serving."""
    proc = subprocess.Popen([sys.executable, "-m", "flask", "acp", "mcp", "--stdio"], cwd=ROOT,
                            env={**_flask_env(tmp_path), "ACP_MCP_API_KEY": AGENT_KEY}, bufsize=0,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdout = proc.stdout

    def answer() -> t.Any:
        ready, _, _ = select.select([stdout], [], [], 30)
        assert ready, "no answer within 30 s"
        return json.loads(stdout.readline())

    try:
        proc.stdin.write(b"this is not json\n[1, 2]\n")
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}).encode() + b"\n")
        proc.stdin.flush()
        answers = [answer() for _ in range(3)]
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
    assert [(a["id"], a["error"]["code"]) for a in answers[:2]] == [(None, -32700), (None, -32600)]
    for answer in answers[:2]:
        validate(answer["error"]["data"], "Error")
    assert answers[2] == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_stdio_server(tmp_path: pathlib.Path) -> None:
    """``flask acp mcp --stdio`` with the agent's key in ACP_MCP_API_KEY,
    driven by the SDK's stdio client."""
    rest = Agent(_same_store_app(tmp_path).test_client())
    params = StdioServerParameters(command=sys.executable, args=["-m", "flask", "acp", "mcp", "--stdio"],
                                   env={**_flask_env(tmp_path), "ACP_MCP_API_KEY": AGENT_KEY}, cwd=str(ROOT))

    async def main() -> None:
        async with Client(params) as client:
            agent = McpAgent(client)
            assert len((await client.list_tools()).tools) == 5
            created = await agent.create()
            data = await agent.error("get_checkout_session", {"meta": meta(), "id": "cs_missing"})
            assert data["code"] == "checkout_session_not_found"
        over_rest = rest.client.get(f"/checkout_sessions/{created['id']}", headers=rest.headers())
        assert over_rest.get_json() == created

    run(main)


def test_the_readme_sdk_snippet_runs(tmp_path: pathlib.Path) -> None:
    """The README's SDK example, run as published against a served app (the
    demo catalog it buys from; only its URL and key replaced)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## ACP over MCP", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    data = ROOT / "flask_acp" / "data"
    app = build_app(tmp_path, ACP_MCP_ENABLED=True, ACP_CATALOG_FILE=str(data / "demo_feed.json"),
                    ACP_STORE_FILE=str(data / "demo_store.json"))
    with serve_app(app) as base:
        code = snippet.replace("https://shop.example/mcp", base + "/mcp")
        env = {**os.environ, "ACP_API_KEY": AGENT_KEY}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60,
                              check=False, text=True)
    assert done.returncode == 0, done.stderr
    assert "cs_" in done.stdout
