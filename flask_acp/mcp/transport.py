"""How the MCP binding is served: Streamable HTTP and stdio.

**Streamable HTTP** is the SDK's own transport
(:class:`mcp.server.streamable_http_manager.StreamableHTTPSessionManager`) in
its *stateless, JSON-response* mode: every POST carries one JSON-RPC message
and gets one JSON answer; there is no ``Mcp-Session-Id`` and no SSE stream
(a GET is 405, which the MCP transport allows). The checkout tools need
nothing more: each call is a request/response, the state lives in the ACP
store, so any worker process can answer any call. In front of it,
:class:`BearerGate` applies the REST API's rules to each HTTP request before
the SDK sees it, and answers every refusal with a JSON-RPC error whose
``data`` is the ACP ``Error`` (never the SDK's or Starlette's plain text):
HTTPS (:class:`TransportRule`, standalone server only: the app's route checks
it with the REST code), ``ACP_MAX_BODY_BYTES`` (413), the agent's bearer token
(401 and ``WWW-Authenticate``), POST only (405), ``application/json`` (415),
and one JSON-RPC message (``-32700`` for a body that is not JSON, ``-32600``
for a batch or any other JSON that is no JSON-RPC message).

Two ways to run it, one ASGI app:

- inside the Flask app (``ACP_MCP_ENABLED``, :mod:`flask_acp.mcp.routes`):
  each WSGI request runs :func:`exchange` — a fresh event loop, a fresh
  stateless session manager, the request, the response — in the worker that
  received it, the pipeline called in that loop (blocking it is fine: it
  serves this one request);
- standalone (``flask acp mcp --port N``, :func:`serve_http`): uvicorn with
  one long-lived session manager; pipeline calls run in worker threads.

**stdio** (``flask acp mcp --stdio``, :func:`serve_stdio`): the SDK's stdio
server; the process is the connection, authenticated by the API key it was
started with (``ACP_MCP_API_KEY``), as MCP's authorization spec asks of stdio
servers (credentials from the environment). A line that is not JSON gets
``-32700``, one that is no JSON-RPC message ``-32600`` (the SDK alone would
drop it silently).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import typing as t

import anyio
import mcp_types as types
import pydantic
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage
from starlette.datastructures import Headers
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..api.body import read_json
from ..api.errors import render_error
from ..api.pipeline import Pipeline
from ..config import Settings
from ..errors import ACPError
from ..errors import BodyTooLargeError
from ..errors import InsecureTransportError
from ..errors import InvalidRequestError
from ..errors import MethodNotAllowedError
from ..errors import NotFoundError
from ..errors import ProcessingError
from ..errors import UnsupportedMediaTypeError
from .tools import ACP_ERROR
from .tools import Binding
from .tools import build_server


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class TransportRule:
    """The REST API's transport rule (``flask_acp.blueprint.check_transport``
    and ``client_scheme_and_addr``) for a server that is not the Flask app:
    HTTPS, or plain HTTP from a loopback client when allowed; behind
    ``trusted_proxy_hops`` proxies the scheme and address are those the
    proxies forwarded (``X-Forwarded-Proto``/``-For``, that many hops from the
    right; a proxy that forwards no scheme: plain HTTP), else the
    connection's own (so the server must not rewrite them from headers:
    uvicorn runs with ``proxy_headers=False``).

    :ivar require_https: ``ACP_REQUIRE_HTTPS``, off in debug/testing mode.
    :ivar allow_insecure_loopback: ``ACP_ALLOW_INSECURE_LOOPBACK``.
    :ivar trusted_proxy_hops: ``ACP_TRUSTED_PROXY_HOPS``.
    """

    require_https: bool
    allow_insecure_loopback: bool = False
    trusted_proxy_hops: int = 0

    @classmethod
    def of(cls, settings: Settings, *, debug: bool) -> TransportRule:
        """The rule of an app's ``settings``; ``debug``: the app is in debug or testing mode."""
        return cls(require_https=settings.require_https and not debug,
                   allow_insecure_loopback=settings.allow_insecure_loopback,
                   trusted_proxy_hops=settings.trusted_proxy_hops)

    def client(self, scope: Scope) -> tuple[str, str | None]:
        """The client's scheme and address (None: unknown)."""
        hops = self.trusted_proxy_hops
        if hops:
            headers = Headers(scope=scope)

            def forwarded(name: str) -> list[str]:
                return [v.strip() for v in ",".join(headers.getlist(name)).split(",") if v.strip()]

            protos, addrs = forwarded("x-forwarded-proto"), forwarded("x-forwarded-for")
            return (protos[-hops].lower() if len(protos) >= hops else "http",
                    addrs[-hops] if len(addrs) >= hops else None)
        client = scope.get("client")
        return str(scope.get("scheme", "http")), (str(client[0]) if client else None)

    def check(self, scope: Scope) -> None:
        """:raises InsecureTransportError: plain HTTP where HTTPS is required (403 ``https_required``)."""
        if not self.require_https:
            return
        scheme, addr = self.client(scope)
        if scheme == "https" or (self.allow_insecure_loopback and _is_loopback(addr)):
            return
        forwarded = ",".join(Headers(scope=scope).getlist("x-forwarded-proto"))
        protos = [v for v in forwarded.split(",") if v.strip()]
        raise InsecureTransportError.explained(trusted_proxy_hops=self.trusted_proxy_hops,
                                               forwarded_protos=len(protos))


class _JsonRpcRefusal(Exception):
    """A body that is not one JSON-RPC message: ``code`` -32700 or -32600."""

    def __init__(self, code: int, error: ACPError) -> None:
        super().__init__(error.message)
        self.code = code
        self.error = error


class _Disconnected(Exception):
    """The client left before its body was read."""


class BearerGate:
    """ASGI middleware in front of the SDK's transport: every HTTP-level rule
    of the MCP endpoint, checked before any JSON-RPC is handled, in the REST
    API's order; each refusal is a JSON-RPC error (``id`` null) whose ``data``
    is the ACP ``Error`` (:func:`refusal`):

    1. ``transport`` (when given): 403 ``https_required``;
    2. a declared body above ``max_body_bytes``: 413 ``payload_too_large``;
    3. the client address's rate limit (``ACP_RATE_LIMIT_PER_IP``; the address
       through ``ACP_TRUSTED_PROXY_HOPS``): 429 with ``Retry-After``;
    4. the agent's key (the REST API's ``ACP_AGENTS`` keys, compared in
       constant time by :meth:`Pipeline.authenticate`): 401 ``unauthorized``
       with ``WWW-Authenticate``;
    5. POST only: 405 ``method_not_allowed``, ``Allow: POST`` (no SSE stream
       and no session to delete in stateless mode);
    6. ``Content-Type: application/json``: 415 ``unsupported_media_type``;
    7. the body, read whole up to ``max_body_bytes`` (413 past it); the
       agent's request-signature policy over it (``Signature``/``Timestamp``
       headers; ``POST``, the endpoint's path, the exact JSON-RPC body): 401
       ``invalid_signature`` when ``strict``;
    8. strict JSON (as a REST body: UTF-8, no key twice, no
       ``Content-Encoding``) — else 400 ``-32700`` (415 for an encoding) —
       and one JSON-RPC 2.0 message — else 400 ``-32600`` (a batch too).

    The agent's own rate limits apply per tool call, in the pipeline. Over
    HTTPS, answers carry ``Strict-Transport-Security`` as REST's do.

    :param transport: the HTTPS rule; None where the caller checked it (the
        app's route, with the REST code).
    """

    def __init__(self, app: ASGIApp, pipeline: Pipeline, *, max_body_bytes: int,
                 transport: TransportRule | None = None) -> None:
        self.app = app
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes
        self.transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.transport is not None and self.transport.client(scope)[0] == "https":
            send = _with_hsts(send)
        try:
            body = await self._admit(scope, receive)
        except ACPError as exc:
            await _respond(send, *refusal(exc))
            return
        except _JsonRpcRefusal as exc:
            await _respond(send, *refusal(exc.error, code=exc.code))
            return
        except _Disconnected:
            return
        await self.app(scope, _replay(body, receive), send)

    def _client_address(self, scope: Scope) -> str | None:
        if self.transport is not None:  # through ACP_TRUSTED_PROXY_HOPS, as REST counts it
            return self.transport.client(scope)[1]
        client = scope.get("client")  # the app's route puts the forwarded address here
        return str(client[0]) if client else None

    async def _admit(self, scope: Scope, receive: Receive) -> bytes:
        """The body of a request that passes every rule.

        :raises ACPError: a refusal (its status and ACP ``Error``).
        :raises _JsonRpcRefusal: not one JSON-RPC message.
        :raises _Disconnected: the client left.
        """
        headers = Headers(scope=scope)
        if self.transport is not None:
            self.transport.check(scope)
        too_large = BodyTooLargeError(f"The request body is larger than {self.max_body_bytes} bytes.")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        self.pipeline.check_client(self._client_address(scope))
        agent = self.pipeline.authenticate(headers.get("authorization"))
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"Method {scope['method']} is not allowed on the MCP endpoint; "
                                        "send each JSON-RPC message in a POST.", allowed=("POST",))
        content_type = headers.get("content-type")
        if (content_type or "").split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaTypeError("The request body must be JSON (Content-Type: application/json).")
        chunks: list[bytes] = []
        size = 0
        while True:  # the whole body: the signature covers it, and the SDK reads it whole too
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        signatures = self.pipeline.signatures
        if signatures is not None and signatures.applies(agent):
            self.pipeline.check_signature(agent, method="POST", path=scope["path"], body=body,
                                          headers={k.lower(): v for k, v in headers.items()})
        try:
            decoded, _ = read_json(body, content_type=content_type,
                                   content_encoding=headers.get("content-encoding"), optional=False)
        except InvalidRequestError as exc:
            if exc.param is None:  # not JSON at all
                raise _JsonRpcRefusal(types.PARSE_ERROR, exc) from None
            decoded = None  # JSON, but not an object: a batch, a number...
        if decoded is None or not _is_jsonrpc_message(decoded):
            raise _JsonRpcRefusal(types.INVALID_REQUEST, _not_a_message())
        return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (read already) once, then waits on the original."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _is_jsonrpc_message(decoded: t.Any) -> bool:
    try:
        types.jsonrpc_message_adapter.validate_python(decoded, by_name=False)
    except pydantic.ValidationError:
        return False
    return True


def _not_a_message() -> InvalidRequestError:
    return InvalidRequestError("Not a JSON-RPC request: send one JSON-RPC 2.0 request or notification "
                               "object (batches are not supported).", param="$")


def _with_hsts(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (
                b"strict-transport-security", b"max-age=31536000; includeSubDomains")]}
        await send(message)

    return sender


def refusal(exc: ACPError, *, code: int = ACP_ERROR) -> tuple[int, bytes, dict[str, str]]:
    """An HTTP-level refusal of the MCP endpoint (before any JSON-RPC is
    handled: HTTPS, body size, rate limit, authentication, signature, method,
    media type): the status the REST API gives ``exc``, its headers, and a
    JSON-RPC error (``id`` null) ``code`` (``-32000``; ``-32700``/``-32600``
    for a body that is no JSON-RPC message, with status 400) carrying the ACP
    ``Error`` as ``data``."""
    rendered = render_error(exc)
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": code, "message": exc.message, "data": rendered.body}}
    return rendered.status, json.dumps(body).encode(), rendered.headers


async def _respond(send: Send, status: int, body: bytes, headers: t.Mapping[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if body:
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class McpService:
    """The MCP server of one app: the binding, the SDK server, and how to serve them.

    :param pipeline: the app's request pipeline (its settings give
        ``ACP_URL_PREFIX`` and ``ACP_MAX_BODY_BYTES``).
    :param offload: run pipeline calls in worker threads (a shared event loop).
    :param stdio_api_key: the agent key of a stdio server (None over HTTP).
    :param transport: the HTTPS rule of a standalone HTTP server (None: the
        caller checks it, as the app's route does).
    """

    def __init__(self, pipeline: Pipeline, *, offload: bool, stdio_api_key: str | None = None,
                 transport: TransportRule | None = None) -> None:
        self.pipeline = pipeline
        self.transport = transport
        self.binding = Binding(pipeline, url_prefix=pipeline.settings.url_prefix, offload=offload)
        self.server: Server[t.Any] = build_server(
            self.binding, stdio_authorization=f"Bearer {stdio_api_key}" if stdio_api_key else None)

    def session_manager(self) -> StreamableHTTPSessionManager:
        """A stateless, JSON-response session manager (each one runs once)."""
        return StreamableHTTPSessionManager(
            app=self.server, json_response=True, stateless=True,
            max_request_body_size=self.pipeline.settings.max_body_bytes)

    def asgi_app(self, manager: StreamableHTTPSessionManager) -> ASGIApp:
        """The endpoint: :class:`BearerGate` in front of ``manager``."""
        return BearerGate(manager.handle_request, self.pipeline, transport=self.transport,
                          max_body_bytes=self.pipeline.settings.max_body_bytes)

    def exchange(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Serve one HTTP request (``scope``, the whole ``body``) to completion
        in a fresh event loop; returns status, headers and body.

        For a WSGI worker: nothing outlives the call (no thread, no loop, no session).
        """
        return anyio.run(self._exchange, scope, body)

    async def _exchange(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()  # the client never disconnects mid-exchange here
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        manager = self.session_manager()
        async with manager.run():
            await self.asgi_app(manager)(scope, receive, send)
        return status, headers, b"".join(chunks)


def serve_http(service: McpService, *, host: str, port: int, path: str,
               ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
               log_level: str = "info") -> None:  # pragma: no cover - exercised in a subprocess
    """Serve the endpoint at ``http(s)://host:port/path`` (and ``path/``) with
    uvicorn until interrupted. Other paths and methods, and any crash outside
    the SDK, are answered as :func:`refusal` JSON too. uvicorn does not read
    ``X-Forwarded-*`` (``proxy_headers=False``): the service's
    :class:`TransportRule` alone decides whom to trust."""
    import contextlib
    import logging

    import uvicorn
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    manager = service.session_manager()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> t.AsyncIterator[None]:
        async with manager.run():
            yield

    def answer(error: ACPError) -> Response:
        status, body, headers = refusal(error)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    async def not_served(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return answer(MethodNotAllowedError(f"Method {request.method} is not allowed here.",
                                                allowed=("POST",)))
        return answer(NotFoundError(f"No such endpoint; the MCP endpoint is {path}."))

    async def crashed(request: Request, exc: Exception) -> Response:
        logging.getLogger("flask_acp").error("unhandled error in an MCP request", exc_info=exc)
        return answer(ProcessingError("An unexpected error occurred; it has been logged."))

    endpoint = service.asgi_app(manager)
    handlers: dict[t.Any, t.Callable[[Request, Exception], t.Awaitable[Response]]] = {
        404: not_served, 405: not_served, Exception: crashed}
    app = Starlette(routes=[Route(path, endpoint=endpoint), Route(path + "/", endpoint=endpoint)],
                    exception_handlers=handlers, lifespan=lifespan)
    uvicorn.run(app, host=host, port=port, log_level=log_level, ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile, proxy_headers=False)


def unreadable_line(exc: Exception) -> types.JSONRPCError:
    """The answer to a stdio line the SDK could not read (``exc``, its
    validation error): ``-32700`` for a line that is not JSON, ``-32600`` for
    JSON that is no JSON-RPC message; ``id`` null, ``data`` an ACP ``Error``."""
    not_json = isinstance(exc, pydantic.ValidationError) and \
        any(e["type"] == "json_invalid" for e in exc.errors())
    error: ACPError
    if not_json:
        code = types.PARSE_ERROR
        error = InvalidRequestError("The line is not valid JSON.", code="invalid_json")
    else:
        code, error = types.INVALID_REQUEST, _not_a_message()
    return types.JSONRPCError(jsonrpc="2.0", id=None, error=types.ErrorData(
        code=code, message=error.message, data=render_error(error).body))


def serve_stdio(service: McpService) -> None:  # pragma: no cover - exercised in a subprocess
    """Serve the tools over stdin/stdout until stdin closes; each unreadable
    line is answered (:func:`unreadable_line`) instead of dropped."""

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            send, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)

            async def screen() -> None:
                async with send:
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            try:
                                await write_stream.send(SessionMessage(unreadable_line(item)))
                            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                                return  # the server has stopped
                        else:
                            await send.send(item)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(screen)
                options = service.server.create_initialization_options()
                await service.server.run(inbound, write_stream, options)

    anyio.run(main)
