"""How the MCP binding is served: Streamable HTTP and stdio.

**Streamable HTTP** is the SDK's own transport
(:class:`mcp.server.streamable_http_manager.StreamableHTTPSessionManager`) in
its *stateless, JSON-response* mode: every POST carries one JSON-RPC message
and gets one JSON answer; there is no ``Mcp-Session-Id`` and no SSE stream
(a GET is 405, which the MCP transport allows). The checkout tools need
nothing more: each call is a request/response, the state lives in the ACP
store, so any worker process can answer any call. In front of it,
:class:`BearerGate` authenticates the connection with the REST API's agents
and keys (``Authorization: Bearer``; 401 and ``WWW-Authenticate`` otherwise,
before any JSON-RPC is read).

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
servers (credentials from the environment).
"""

from __future__ import annotations

import json
import typing as t

import anyio
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..api.errors import render_error
from ..api.pipeline import Pipeline
from ..errors import ACPError
from ..errors import BodyTooLargeError
from .tools import ACP_ERROR
from .tools import Binding
from .tools import build_server


class BearerGate:
    """ASGI middleware: the connection-level checks of the MCP endpoint, per
    HTTP request, before any JSON-RPC is read.

    1. the client address's rate limit (``ACP_RATE_LIMIT_PER_IP``; the scope's
       ``client``): 429 with ``Retry-After``;
    2. the agent key (the REST API's ``ACP_AGENTS`` keys, compared in constant
       time by :meth:`Pipeline.authenticate`): 401 with ``WWW-Authenticate``;
    3. the agent's request-signature policy over the raw HTTP request
       (``Signature``/``Timestamp`` headers; ``POST``, the endpoint's path, the
       exact JSON-RPC body): 401 ``invalid_signature`` when ``strict``.

    Each refusal is a JSON-RPC error ``-32000`` whose ``data`` is the ACP
    ``Error``. An authenticated GET gets 405 (``Allow: POST``): no SSE stream
    is offered. The agent's own rate limits apply per tool call, in the pipeline.
    """

    def __init__(self, app: ASGIApp, pipeline: Pipeline) -> None:
        self.app = app
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            client = scope.get("client")
            self.pipeline.check_client(client[0] if client else None)
            agent = self.pipeline.authenticate(headers.get("authorization"))
        except ACPError as exc:
            await _respond(send, *refusal(exc))
            return
        if scope["method"] == "GET":
            await _respond(send, 405, b"", {"Allow": "POST"})
            return
        signatures = self.pipeline.signatures
        if scope["method"] == "POST" and signatures is not None and signatures.applies(agent):
            body = b""
            while True:  # the whole body: the signature covers it (the SDK reads it whole too)
                message = await receive()
                body += message.get("body", b"")
                if len(body) > self.pipeline.settings.max_body_bytes:
                    await _respond(send, *refusal(BodyTooLargeError("The request body is too large.")))
                    return
                if not message.get("more_body", False):
                    break
            try:
                self.pipeline.check_signature(agent, method="POST", path=scope["path"], body=body,
                                              headers={k.lower(): v for k, v in headers.items()})
            except ACPError as exc:
                await _respond(send, *refusal(exc))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


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


def refusal(exc: ACPError) -> tuple[int, bytes, dict[str, str]]:
    """An HTTP-level refusal of the MCP endpoint (before any JSON-RPC is read:
    authentication, HTTPS, body size): the status the REST API gives ``exc``,
    its headers, and a JSON-RPC error (``id`` null) ``-32000`` carrying the ACP
    ``Error`` as ``data``."""
    rendered = render_error(exc)
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": ACP_ERROR, "message": exc.message, "data": rendered.body}}
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
    """

    def __init__(self, pipeline: Pipeline, *, offload: bool, stdio_api_key: str | None = None) -> None:
        self.pipeline = pipeline
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
        return BearerGate(manager.handle_request, self.pipeline)

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
    """Serve the endpoint at ``http(s)://host:port/path`` with uvicorn until interrupted."""
    import contextlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    manager = service.session_manager()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> t.AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=[Route(path, endpoint=service.asgi_app(manager))], lifespan=lifespan)
    uvicorn.run(app, host=host, port=port, log_level=log_level, ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile)


def serve_stdio(service: McpService) -> None:  # pragma: no cover - exercised in a subprocess
    """Serve the tools over stdin/stdout until stdin closes."""

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await service.server.run(read_stream, write_stream,
                                     service.server.create_initialization_options())

    anyio.run(main)
