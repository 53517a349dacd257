"""The MCP binding of the checkout API: five tools over the request pipeline.

ACP 2026-04-17 defines it (``docs/mcp-binding.md``,
``openrpc/openrpc.agentic_checkout.json``): each REST operation is an MCP
tool, called with ``tools/call`` and the arguments::

    {"meta": {"api_version": "2026-04-17", "idempotency_key": "...", "request_id": "...",
              "user_agent": "...", "accept_language": "fr", "signature": "...", "timestamp": "..."},
     "id": "cs_...",          # the session id of the REST path (not for create)
     "payload": {...}}        # the REST request body (not for get; optional for cancel)

Each call becomes the :class:`~flask_acp.api.pipeline.ApiRequest` the
equivalent REST request would have built (``meta`` members as the headers
they stand for, ``payload`` as the body, the REST path as the idempotency
scope) and runs through :meth:`Pipeline.handle`, so both bindings share
authentication, version negotiation, idempotency records, body validation
(the negotiated version's request schemas), the core, the store and the
order webhooks. What differs is only the envelope:

- success: a ``CallToolResult`` whose ``structuredContent`` is the session
  exactly as REST returns it (and the same JSON as one text block);
  ``_meta.acp`` carries what REST puts in headers: ``http_status`` (201 on
  create), ``content_language``, ``request_id`` and ``idempotent_replayed``;
- an ACP error (every 4xx/5xx of the pipeline): JSON-RPC error ``-32000``
  whose ``data`` is the flat ACP ``Error`` and whose ``message`` is its
  ``message``; a ``param`` names the field in the tool arguments
  (``$.payload.currency`` where REST says ``$.currency``);
- an envelope problem (arguments that do not fit the tool's input schema: no
  ``meta.api_version``, no ``id``, a ``payload`` that is not an object, an
  unknown argument) or an unknown tool: JSON-RPC error ``-32602``, whose
  ``data`` is an ACP ``Error`` too (``param`` e.g. ``$.meta.api_version``).

The input schemas are the binding's envelope with ``payload`` described by
the REST API's own request schemas (marshmallow, converted to JSON Schema by
``apispec``) of the newest served version; when older versions are served
too, ``payload`` also admits any object (``anyOf``), so a client that
validates does not refuse an older version's body. The server checks the
envelope only; the pipeline validates ``payload`` per ``meta.api_version``
exactly as a REST body (so every version the REST API serves is served here
too, with the same messages). ``id`` is one REST path segment (no ``/``, as
the REST route's): the REST path is the idempotency scope, and an ``id`` such
as ``cs_X/complete`` would share the scope of another operation. Every result
declares the same minimal ``outputSchema`` (an object with ``id`` and
``status``: the session of ``meta.api_version``).
``meta.idempotency_key`` is optional, as the binding makes it: a call without
one is run as a request of its own (an idempotency key of its own, never
replayed); with one, it is the REST ``Idempotency-Key`` of the same scope
(agent + REST path), so an MCP call and a REST request with the same key, path
and body replay each other. The agent's bearer token comes from the
connection (the HTTP ``Authorization`` header; for stdio, the key the server
was started with), never from the arguments.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import importlib.metadata
import json
import logging
import re
import typing as t
import uuid

import anyio.to_thread
import jsonschema  # type: ignore[import-untyped]
import mcp_types as types
import pydantic
from apispec import APISpec
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema
from mcp.server import Server
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext
from mcp.server.context import HandlerResult
from mcp.shared.exceptions import MCPError
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from .. import i18n
from ..api.errors import render_error
from ..api.pipeline import ApiRequest
from ..api.pipeline import Pipeline
from ..api.response import ApiResponse
from ..api.response import request_id as bounded_request_id
from ..errors import ACPError
from ..errors import InvalidRequestError
from ..errors import ProcessingError
from ..versions import WireVersion

log = logging.getLogger("flask_acp")

#: JSON-RPC error code of every ACP error (the binding's "server error").
ACP_ERROR = -32000
#: JSON-RPC "invalid params": only for envelope-level problems.
INVALID_PARAMS = types.INVALID_PARAMS

#: ``meta`` member -> the REST header it stands for (lower case, as ApiRequest wants them).
META_HEADERS: dict[str, str] = {
    "api_version": "api-version",
    "idempotency_key": "idempotency-key",
    "request_id": "request-id",
    "user_agent": "user-agent",
    "accept_language": "accept-language",
    "signature": "signature",
    "timestamp": "timestamp",
}

_META_DOCS: dict[str, str] = {
    "api_version": "ACP version (YYYY-MM-DD) of this call; the REST API-Version header.",
    "idempotency_key": "Retry safety for calls that change state; the REST Idempotency-Key header "
                       "(same key, same tool, session and payload: the first answer again; another "
                       "payload: error idempotency_conflict). Send one with every create and complete.",
    "request_id": "Correlation id, echoed in _meta.acp.request_id; the REST Request-Id header.",
    "user_agent": "The agent's identification; the REST User-Agent header.",
    "accept_language": "Language of display texts and messages (en, fr, de, es); the REST "
                       "Accept-Language header.",
    "signature": "Not checked here: a merchant that requires signed requests checks the Signature and "
                 "Timestamp HTTP headers of the MCP request, over its raw body.",
    "timestamp": "Request signing time (RFC 3339); see signature.",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool of the binding.

    :ivar name: the tool name (the OpenRPC method name).
    :ivar operation: the pipeline operation (``create``, ``get``...).
    :ivar suffix: the REST path after ``/checkout_sessions/{id}`` (``/complete``).
    :ivar payload: ``required``, ``optional`` or ``none``.
    :ivar definition: the spec's JSON Schema definition the payload follows.
    """

    name: str
    operation: str
    title: str
    description: str
    suffix: str = ""
    payload: str = "required"
    definition: str | None = None
    read_only: bool = False
    destructive: bool = False

    @property
    def takes_id(self) -> bool:
        return self.operation != "create"


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("create_checkout_session", "create", "Create a checkout session",
             "Create a checkout session from line items, currency and capabilities; returns the session "
             "with authoritative prices, totals, fulfillment options and messages. REST: POST "
             "/checkout_sessions.", definition="CheckoutSessionCreateRequest"),
    ToolSpec("get_checkout_session", "get", "Get a checkout session",
             "The latest authoritative state of a checkout session. REST: GET "
             "/checkout_sessions/{id}.", payload="none", read_only=True),
    ToolSpec("update_checkout_session", "update", "Update a checkout session",
             "Change items, buyer, fulfillment details or the selected fulfillment option; returns the "
             "updated session. REST: POST /checkout_sessions/{id}.",
             definition="CheckoutSessionUpdateRequest"),
    ToolSpec("complete_checkout_session", "complete", "Complete a checkout session",
             "Pay with the payment data (a delegated payment token) and place the order; returns the "
             "completed session with its order, or the session with a message when the payment was "
             "declined or the price changed. Send meta.idempotency_key. REST: POST "
             "/checkout_sessions/{id}/complete.", suffix="/complete",
             definition="CheckoutSessionCompleteRequest"),
    ToolSpec("cancel_checkout_session", "cancel", "Cancel a checkout session",
             "Cancel a session that is not completed or canceled, optionally with an intent trace "
             "saying why; returns the canceled session. REST: POST /checkout_sessions/{id}/cancel.",
             suffix="/cancel", payload="optional", definition="CancelSessionRequest",
             destructive=True),
)


def meta_schema(versions: cabc.Sequence[str]) -> dict[str, t.Any]:
    """The ``meta`` argument's JSON Schema (the binding's ``meta``), with the
    served versions (newest first) as ``examples`` of ``api_version``."""
    properties: dict[str, t.Any] = {name: {"type": "string", "description": doc}
                                     for name, doc in _META_DOCS.items()}
    properties["api_version"]["examples"] = list(versions)
    properties["timestamp"]["format"] = "date-time"
    return {
        "type": "object",
        "description": "Protocol metadata: what REST sends as headers (authentication excepted: it "
                       "belongs to the connection).",
        "required": ["api_version"],
        "additionalProperties": True,
        "properties": properties,
    }


#: every tool's ``outputSchema``: what all versions' sessions have in common
#: (the result is the session of ``meta.api_version``, whose schema differs
#: per version; the SDK's client checks results against it)
OUTPUT_SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "description": "The checkout session exactly as the REST API returns it in meta.api_version (with "
                   "its order once completed).",
    "properties": {"id": {"type": "string", "description": "The checkout session id."},
                   "status": {"type": "string", "description": "The session status."}},
    "required": ["id", "status"],
}

#: ``id``: one REST path segment, as the REST route's ``<checkout_session_id>`` matches
ID_PATTERN = "^[^/]+$"


def request_json_schema(schema: type[Schema]) -> dict[str, t.Any]:
    """A REST request schema (marshmallow) as JSON Schema 2020-12, nested
    schemas inline (``apispec``'s converter, OpenAPI 3.1 = JSON Schema 2020-12).
    Unknown members stay allowed (no ``additionalProperties``), as the REST
    API ignores them; checks written in code (currency codes, token formats)
    are the server's."""
    spec = APISpec("flask-acp", "1", "3.1.0")
    converter = OpenAPIConverter("3.1.0", lambda _schema: None, spec)
    return t.cast(dict[str, t.Any], converter.schema2jsonschema(schema))  # type: ignore[no-untyped-call]


def payload_schema(spec: ToolSpec, wires: cabc.Sequence[WireVersion]) -> dict[str, t.Any]:
    """``payload``'s JSON Schema: the request schema of the newest of
    ``wires`` (the served versions, newest first); with older versions served
    too, ``anyOf`` that or any object (their bodies are validated by the
    server per ``meta.api_version``, never refused by a client that validates)."""
    newest = wires[0]
    title = f"ACP {newest.version} {spec.definition}"
    schema = {"title": title, **request_json_schema(newest.request_schemas[spec.operation])}
    description = f"The REST request body: an ACP {spec.definition} of meta.api_version, validated by the " \
                  "server as the REST API validates it."
    if len(wires) == 1:
        return {**schema, "description": description}
    older = ", ".join(wire.version for wire in wires[1:])
    return {
        "type": "object",
        "description": f"{description} Described here as of {newest.version} (the newest version served); "
                       f"older versions also served ({older}) have their own shapes: send the one of your "
                       "meta.api_version.",
        "anyOf": [schema, {"type": "object", "title": f"A request body of an older version ({older})"}],
    }


def input_schema(spec: ToolSpec, wires: cabc.Sequence[WireVersion], *,
                 envelope_only: bool = False) -> dict[str, t.Any]:
    """The tool's input schema: the binding's argument envelope, ``payload``
    as :func:`payload_schema` (or any object with ``envelope_only``: what
    the server itself checks before the pipeline).

    :param wires: the served versions, newest first.
    """
    properties: dict[str, t.Any] = {"meta": meta_schema([wire.version for wire in wires])}
    required = ["meta"]
    if spec.takes_id:
        properties["id"] = {"type": "string", "minLength": 1, "pattern": ID_PATTERN,
                            "description": "The checkout session id (the REST path's checkout_session_id: "
                                           "one path segment, no '/')."}
        required.append("id")
    if spec.payload != "none":
        properties["payload"] = {"type": "object"} if envelope_only else payload_schema(spec, wires)
        if spec.payload == "required":
            required.append("payload")
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


class EnvelopeError(Exception):
    """Tool arguments that do not fit the envelope (JSON-RPC ``-32602``).

    :ivar error: the ACP ``Error`` cause (``param``: JSONPath in the arguments).
    """

    def __init__(self, error: ACPError) -> None:
        super().__init__(error.message)
        self.error = error


def _segment(name: str | int) -> str:
    if isinstance(name, int):
        return f"[{name}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f".{name}"
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _envelope_error(error: jsonschema.ValidationError) -> EnvelopeError:
    """The first schema violation of the arguments as an ACP ``Error`` cause
    (``param``: its JSONPath; a missing or unknown member is named itself)."""
    path = list(error.absolute_path)
    instance = error.instance
    code = "invalid_type" if error.validator == "type" else "invalid"
    if error.validator == "required" and isinstance(instance, dict):
        path.append(next(n for n in error.validator_value if n not in instance))
        param = "$" + "".join(map(_segment, path))
        message = f"{param} is required."
    elif error.validator == "additionalProperties" and isinstance(instance, dict):
        path.append(next(n for n in instance if n not in error.schema.get("properties", {})))
        param = "$" + "".join(map(_segment, path))
        message = f"{param} is not an argument of this tool."
    elif error.validator == "pattern" and path == ["id"]:
        param = "$.id"
        message = "$.id must be a checkout session id: one segment of the REST path, without '/'."
    else:
        param = "$" + "".join(map(_segment, path))
        message = f"{param}: {error.message}"
    return EnvelopeError(InvalidRequestError(message, code=code, param=param))


def _payload_param(data: dict[str, t.Any]) -> dict[str, t.Any]:
    """An ACP Error of the pipeline whose ``param`` points into the REST body,
    pointed into the tool arguments instead (``$.x`` -> ``$.payload.x``)."""
    param = data.get("param")
    if isinstance(param, str) and param.startswith("$"):
        return {**data, "param": "$.payload" + param[1:]}
    return data


def _language(accept_language: str | None) -> str | None:
    """As REST: the best of our languages for ``Accept-Language`` (English when
    none fits), or None when the agent stated no preference."""
    if accept_language is None:
        return None
    accepted = parse_accept_header(accept_language, LanguageAccept)
    return accepted.best_match(i18n.LANGUAGES) or "en"


class Binding:
    """The five tools, run through ``pipeline``.

    :param pipeline: the app's request pipeline.
    :param url_prefix: ``ACP_URL_PREFIX``; idempotency scopes are the REST paths under it.
    :param offload: run each pipeline call in a worker thread (a server whose
        event loop serves several requests at once: uvicorn, stdio); False runs
        it in the loop (one loop per request, as the Flask route does).
    """

    def __init__(self, pipeline: Pipeline, *, url_prefix: str, offload: bool) -> None:
        self.pipeline = pipeline
        self.url_prefix = url_prefix
        self.offload = offload
        self.specs = {spec.name: spec for spec in TOOLS}
        wires = [pipeline.versions[version] for version in pipeline.settings.api_versions]
        self.schemas = {spec.name: input_schema(spec, wires) for spec in TOOLS}
        self._validators = {spec.name: jsonschema.Draft202012Validator(
            input_schema(spec, wires, envelope_only=True)) for spec in TOOLS}

    # -- MCP surfaces ----------------------------------------------------------------

    def tools(self) -> list[types.Tool]:
        """The ``tools/list`` entries."""
        return [types.Tool(
            name=spec.name, title=spec.title, description=spec.description,
            input_schema=self.schemas[spec.name],
            output_schema=OUTPUT_SCHEMA,
            annotations=types.ToolAnnotations(read_only_hint=spec.read_only,
                                              destructive_hint=spec.destructive,
                                              open_world_hint=False),
        ) for spec in TOOLS]

    def input_schema(self, name: str) -> dict[str, t.Any] | None:
        """The published input schema of the tool ``name`` (None: no such tool)."""
        return self.schemas.get(name)

    async def call(self, name: str, arguments: t.Any, *, authorization: str | None) -> types.CallToolResult:
        """Run one ``tools/call``.

        :param authorization: the connection's ``Authorization`` header value.
        :raises MCPError: ``-32000`` with the ACP ``Error`` as ``data`` (every
            pipeline error); ``-32602`` for an unknown tool or bad envelope.
        """
        try:
            api_request, request_id = self.request(name, arguments, authorization=authorization)
        except EnvelopeError as exc:
            data = render_error(exc.error).body
            raise MCPError(INVALID_PARAMS, data["message"], data) from None
        try:
            if self.offload:
                response = await anyio.to_thread.run_sync(self.pipeline.handle, api_request)
            else:
                response = self.pipeline.handle(api_request)
        except Exception:
            log.exception("unhandled error in MCP tool %s (request %s)", name, request_id)
            data = render_error(ProcessingError("An unexpected error occurred; it has been logged.")).body
            raise MCPError(ACP_ERROR, data["message"], data) from None
        return self.result(response, request_id)

    # -- the mapping -------------------------------------------------------------------

    def request(self, name: str, arguments: t.Any, *, authorization: str | None) -> tuple[ApiRequest, str]:
        """The pipeline request of one tool call, and its request id.

        :raises EnvelopeError: unknown tool, or arguments outside the envelope.
        """
        spec = self.specs.get(name)
        if spec is None:
            raise EnvelopeError(InvalidRequestError(
                f"Unknown tool {name!r}; the tools are {', '.join(self.specs)}.", code="unknown_tool"))
        arguments = {} if arguments is None else arguments
        errors = sorted(self._validators[name].iter_errors(arguments),
                        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        if errors:
            raise _envelope_error(errors[0])
        meta: dict[str, t.Any] = arguments["meta"]
        headers = {header: meta[member] for member, header in META_HEADERS.items()
                   if isinstance(meta.get(member), str)}
        if authorization is not None:
            headers["authorization"] = authorization
        request_id = bounded_request_id(headers.get("request-id"))
        body = b""
        if "payload" in arguments:
            headers["content-type"] = "application/json"
            body = json.dumps(arguments["payload"], ensure_ascii=False, allow_nan=True).encode()
        if spec.operation != "get" and not headers.get("idempotency-key"):
            # the binding makes the key optional: a call without one is a request of its own
            headers["idempotency-key"] = f"mcp-{uuid.uuid4().hex}"
        session_id = arguments.get("id")
        path = f"{self.url_prefix}/checkout_sessions"
        if spec.takes_id:
            path += f"/{session_id}{spec.suffix}"
        # the endpoint counted the client address and checked the signature over the raw
        # HTTP request (BearerGate); a stdio connection has neither
        return ApiRequest(operation=spec.operation, session_id=session_id, headers=headers, body=body,
                          scope=path, language=_language(headers.get("accept-language")),
                          signature_checked=True), request_id

    def result(self, response: ApiResponse, request_id: str) -> types.CallToolResult:
        """A pipeline response as the tool's result.

        :raises MCPError: ``-32000`` for an error response (``data``: the ACP
            ``Error``, ``param`` pointing into the tool arguments).
        """
        body = response.json()
        if response.status >= 400:
            data = _payload_param(body)
            raise MCPError(ACP_ERROR, str(data.get("message") or "error"), data)
        acp: dict[str, t.Any] = {"http_status": response.status, "request_id": request_id}
        if "Content-Language" in response.headers:
            acp["content_language"] = response.headers["Content-Language"]
        if response.headers.get("Idempotent-Replayed") == "true":
            acp["idempotent_replayed"] = True
        return types.CallToolResult(
            content=[types.TextContent(text=response.body.decode())],
            structured_content=body,
            _meta={"acp": acp},
        )


def _package_version() -> str:
    try:
        return importlib.metadata.version("flask-acp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return ""


def build_server(binding: Binding, *, stdio_authorization: str | None = None) -> Server[t.Any]:
    """The SDK's low-level server with the binding's ``tools/list`` and ``tools/call``.

    :param stdio_authorization: the ``Authorization`` value of a connection
        that has no HTTP request (stdio: ``Bearer <key>`` it was started with).
    """

    async def list_tools(ctx: ServerRequestContext[t.Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=binding.tools())

    async def call_tool(ctx: ServerRequestContext[t.Any], params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        request = ctx.request
        authorization = stdio_authorization
        if request is not None:
            authorization = request.headers.get("authorization")
        return await binding.call(params.name, params.arguments, authorization=authorization)

    server: Server[t.Any] = Server(
        "flask-acp",
        version=_package_version(),
        title="ACP checkout (flask-acp)",
        instructions="Agentic Commerce Protocol checkout: create a checkout session, update it until "
                     "its status is ready_for_payment, then complete it with a delegated payment token "
                     "(or cancel it). Every call takes meta.api_version; send meta.idempotency_key on "
                     "every call that changes state.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=binding.input_schema,
    )
    server.middleware.append(_tools_call_params)
    return server


def _invalid_params(message: str, *, code: str = "invalid", param: str | None = None) -> MCPError:
    data = render_error(InvalidRequestError(message, code=code, param=param)).body
    return MCPError(INVALID_PARAMS, message, data)


async def _tools_call_params(ctx: ServerRequestContext[t.Any], call_next: CallNext) -> HandlerResult:
    """Server middleware (it runs before the SDK validates params): ``tools/call``
    params the SDK would refuse with an empty ``data`` get ``-32602`` with an
    ACP ``Error`` — ``arguments`` that is not an object (``param`` ``$``: the
    arguments themselves), or params that do not fit ``tools/call``."""
    if ctx.method != "tools/call":
        return await call_next(ctx)
    params = ctx.params if isinstance(ctx.params, cabc.Mapping) else {}
    arguments = params.get("arguments")
    if arguments is not None and not isinstance(arguments, cabc.Mapping):
        raise _invalid_params("$: the tool arguments must be an object.", code="invalid_type", param="$")
    try:
        return await call_next(ctx)
    except pydantic.ValidationError:
        raise _invalid_params("The tools/call params must be {name: a tool name, arguments: an object}."
                              ) from None
