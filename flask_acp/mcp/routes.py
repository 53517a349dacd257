"""``ACP_MCP_PATH`` (``/mcp``, and ``/mcp/``) of the Flask app, when ``ACP_MCP_ENABLED``.

The view checks the transport as the REST routes do (HTTPS outside
debug/testing, ``ACP_MAX_BODY_BYTES``), then hands the request to the MCP
ASGI app (:meth:`flask_acp.mcp.transport.McpService.exchange`: the SDK's
stateless Streamable HTTP transport behind the bearer-token gate) in a fresh
event loop in this worker, and returns its answer. One worker serves one MCP
request at a time, as it serves one REST request: WSGI servers with sync or
thread workers (gunicorn ``sync``/``gthread``, werkzeug) are fine; gevent and
eventlet workers are not supported here (run ``flask acp mcp`` instead).
"""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from ..api.pipeline import Pipeline
from ..blueprint import check_body_size
from ..blueprint import check_transport
from ..blueprint import client_scheme_and_addr
from ..blueprint import read_body
from ..errors import ACPError
from ..errors import BodyTooLargeError
from ..errors import InvalidRequestError
from ..errors import ProcessingError
from . import require_sdk

log = logging.getLogger("flask_acp")

#: every method reaches the SDK's transport, which answers those it does not serve
_METHODS = ["POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"]


def make_blueprint(path: str, pipeline: Pipeline) -> Blueprint:
    """The blueprint serving the MCP endpoint at ``path`` over ``pipeline``
    (every method: the transport answers 405 to those it does not serve).

    :raises RuntimeError: the ``mcp`` SDK is not installed.
    """
    require_sdk()
    from .transport import McpService
    from .transport import refusal

    service = McpService(pipeline, offload=False)

    def refuse(exc: ACPError) -> Response:
        status, body, headers = refusal(exc)
        response = Response(body, status=status, headers=headers, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    def endpoint() -> Response:
        try:
            check_transport()
            check_body_size()
            body = read_body() if request.method == "POST" else b""
        except ACPError as exc:
            return refuse(exc)
        environ = request.environ
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
            "method": request.method,
            "scheme": request.scheme,
            "path": request.path,
            "raw_path": request.path.encode("utf-8"),
            "root_path": "",
            "query_string": request.query_string,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in request.headers.items()],
            # the client's address through ACP_TRUSTED_PROXY_HOPS (its rate limit, as on REST)
            "client": (client_scheme_and_addr()[1] or "", int(environ.get("REMOTE_PORT") or 0)),
            "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
        }
        status, raw_headers, payload = service.exchange(scope, body)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers
                   if k.lower() != b"content-length"]
        response = Response(payload, status=status, headers=headers)
        if not any(k.lower() == "content-type" for k, _ in headers):
            del response.headers["Content-Type"]
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    bp = Blueprint("acp_mcp", __name__)
    bp.add_url_rule(path, endpoint="mcp", view_func=endpoint, methods=_METHODS,
                    provide_automatic_options=False)
    # ``path/`` is the endpoint too (a client that adds the slash gets MCP, not the host's HTML 404)
    bp.add_url_rule(path + "/", endpoint="mcp_slash", view_func=endpoint, methods=_METHODS,
                    provide_automatic_options=False)

    def unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            if exc.code == 413:
                return refuse(BodyTooLargeError("The request body is too large."))
            return refuse(InvalidRequestError(exc.description or exc.name))
        log.exception("unhandled error in an MCP request")
        return refuse(ProcessingError("An unexpected error occurred; it has been logged."))

    bp.register_error_handler(Exception, unexpected)
    return bp
