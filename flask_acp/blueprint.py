"""The Flask binding of the checkout API: thin views over the request pipeline.

The blueprints are built by :func:`make_blueprints` inside ``ACP.init_app``
(the checkout one under ``ACP_URL_PREFIX``). A request goes through, in order:

1. the transport checks of this binding: HTTPS (outside debug/testing, with
   ``ACP_TRUSTED_PROXY_HOPS``) -> 403 ``https_required``; body size
   (``ACP_MAX_BODY_BYTES``) -> 413;
2. :meth:`flask_acp.api.pipeline.Pipeline.handle`: authentication, version,
   idempotency, parsing, the core, rendering (see :mod:`flask_acp.api.pipeline`);
3. ``Request-Id``, ``Idempotency-Key`` echo and ``Cache-Control: no-store``.

Every error is the flat ACP ``Error`` JSON body (:mod:`flask_acp.api.errors`), never HTML.
"""

from __future__ import annotations

import ipaddress
import logging
import typing as t

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import SecurityError

from . import cli
from . import i18n
from . import logs
from .api.errors import render_error
from .api.pipeline import ApiRequest
from .api.response import ApiResponse
from .api.response import error_response
from .api.response import json_response
from .api.response import request_id
from .errors import ACPError
from .errors import BodyTooLargeError
from .errors import InsecureTransportError
from .errors import InvalidRequestError
from .errors import MethodNotAllowedError
from .errors import NotFoundError
from .errors import ProcessingError
from .state import current_state
from .versions import VERSIONS

log = logging.getLogger("flask_acp")


def to_flask(response: ApiResponse) -> Response:
    """A pipeline response as a Flask response."""
    headers = dict(response.headers)
    mimetype = headers.pop("Content-Type", "application/json")
    return Response(response.body, status=response.status, headers=headers, mimetype=mimetype)


# --- transport checks -------------------------------------------------------------


def client_scheme_and_addr() -> tuple[str, str | None]:
    """The client's scheme and address, through ``ACP_TRUSTED_PROXY_HOPS`` proxies."""
    hops = current_state().settings.trusted_proxy_hops
    if hops:
        protos = [p.strip() for p in request.headers.get("X-Forwarded-Proto", "").split(",") if p.strip()]
        addrs = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        # each header on its own: a proxy may set X-Forwarded-Proto only
        scheme = protos[-hops].lower() if len(protos) >= hops else "http"  # unset: refuse
        return scheme, (addrs[-hops] if len(addrs) >= hops else None)
    return request.scheme, request.remote_addr


def is_loopback(addr: str | None) -> bool:
    """Whether ``addr`` is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def check_transport() -> None:
    """HTTPS (outside debug/testing), or plain HTTP from loopback when allowed.

    :raises InsecureTransportError: (403 ``https_required``).
    """
    settings = current_state().settings
    app = current_app
    if not settings.require_https or app.debug or app.testing:
        return
    scheme, addr = client_scheme_and_addr()
    if scheme == "https" or (settings.allow_insecure_loopback and is_loopback(addr)):
        return
    protos = [p for p in request.headers.get("X-Forwarded-Proto", "").split(",") if p.strip()]
    raise InsecureTransportError.explained(trusted_proxy_hops=settings.trusted_proxy_hops,
                                           forwarded_protos=len(protos))


def check_body_size() -> None:
    """:raises BodyTooLargeError: a declared body above ``ACP_MAX_BODY_BYTES`` (413)."""
    limit = current_state().settings.max_body_bytes
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"The request body is larger than {limit} bytes.")


def read_body() -> bytes:
    """The request body, at most ``ACP_MAX_BODY_BYTES`` (a longer chunked body: 413)."""
    raw = request.get_data(cache=True)
    if request.content_length is None and len(raw) >= current_state().settings.max_body_bytes:
        # werkzeug stops a streamed (chunked) body at the limit without an error;
        # reading past it raises RequestEntityTooLarge (413) if more was sent
        request.stream.read(1)
    return raw


def _before_request() -> None:
    g._acp_request_id = request_id(request.headers.get("Request-Id"))
    g._acp_log_context = logs.start(request_id=g._acp_request_id)  # nothing of a previous request stays
    check_transport()
    check_body_size()


def secure_headers(response: Response) -> Response:
    """One bounded ``Request-Id`` (:func:`~flask_acp.api.response.request_id`)
    and, over HTTPS, ``Strict-Transport-Security`` (one year, subdomains)."""
    if "_acp_request_id" not in g:
        g._acp_request_id = request_id(request.headers.get("Request-Id"))
    response.headers["Request-Id"] = g._acp_request_id
    if client_scheme_and_addr()[0] == "https":
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def _teardown_request(exc: BaseException | None) -> None:
    token = g.pop("_acp_log_context", None)
    if token is not None:
        logs.reset(token)


def _after_request(response: Response) -> Response:
    secure_headers(response)
    key = request.headers.get("Idempotency-Key")
    if key and request.method in ("POST", "PUT") and len(key) <= 255:
        response.headers["Idempotency-Key"] = key
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# --- views ----------------------------------------------------------------------


def _run(operation: str, session_id: str | None = None) -> Response:
    # the agent's stated preference (English when none of ours fits), or None: the session's locale
    language = (request.accept_languages.best_match(i18n.LANGUAGES) or "en") \
        if "Accept-Language" in request.headers else None
    api_request = ApiRequest(
        operation=operation,
        session_id=session_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=read_body() if request.method in ("POST", "PUT") else b"",
        scope=request.path,
        language=language,
        client_address=client_scheme_and_addr()[1],
    )
    return to_flask(current_state().pipeline.handle(api_request))


def create_checkout_session() -> Response:
    return _run("create")


def update_checkout_session(checkout_session_id: str) -> Response:
    return _run("update", checkout_session_id)


def get_checkout_session(checkout_session_id: str) -> Response:
    return _run("get", checkout_session_id)


def complete_checkout_session(checkout_session_id: str) -> Response:
    return _run("complete", checkout_session_id)


def cancel_checkout_session(checkout_session_id: str) -> Response:
    return _run("cancel", checkout_session_id)


def create_cart() -> Response:
    return _run("cart_create")


def get_cart(cart_id: str) -> Response:
    return _run("cart_get", cart_id)


def update_cart(cart_id: str) -> Response:
    return _run("cart_update", cart_id)


def cancel_cart(cart_id: str) -> Response:
    return _run("cart_cancel", cart_id)


def discovery() -> Response:
    state = current_state()
    settings = state.settings
    wire = VERSIONS[settings.api_versions[0]]
    base = settings.api_base_url
    cache = f"public, max-age={settings.discovery_max_age}"
    if base is None:
        # derived from the request's Host: never let a cache keep it for others
        scheme, _ = client_scheme_and_addr()
        base = f"{scheme}://{request.host}{settings.url_prefix}"
        cache = "no-store"
    body = wire.render_discovery(
        api_base_url=base,
        supported_versions=settings.api_versions,
        currencies=state.adapter.supported_currencies(),
        interventions=settings.interventions,
        languages=i18n.LANGUAGES,
    )
    services = body["capabilities"]["services"]
    if settings.carts_enabled and "carts" not in services:
        body["capabilities"]["services"] = [*services, "carts"]  # the Cart API (/carts)
    if settings.mcp_enabled and "mcp" not in body["transports"]:
        body["transports"] = [*body["transports"], "mcp"]  # served at ACP_MCP_PATH (flask_acp.mcp)
    return to_flask(json_response(body, headers={"Cache-Control": cache}))


# --- errors ---------------------------------------------------------------------


def _handle_acp_error(exc: ACPError) -> Response:
    return to_flask(error_response(exc))


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    error: ACPError
    if status == 413:
        error = BodyTooLargeError("The request body is too large.")
    elif status == 404:
        error = NotFoundError("No such ACP endpoint.")
    elif status == 405:
        error = MethodNotAllowedError(f"Method {request.method} is not allowed on this endpoint.",
                                      allowed=getattr(exc, "valid_methods", None) or ())
    elif status >= 500:
        error = ProcessingError("Internal error.")
    elif isinstance(exc, SecurityError):  # a Host outside TRUSTED_HOSTS: never echo it
        error = InvalidRequestError("The Host header names no host this server answers for.",
                                    code="untrusted_host")
    else:
        # any other 4xx the host app raised (429, 408, 412...) keeps its status:
        # an agent decides whether to retry from it
        error = InvalidRequestError(exc.description or exc.name, code=exc.name.lower().replace(" ", "_"))
        rendered = render_error(error)
        return to_flask(json_response(rendered.body, status, rendered.headers))
    return _handle_acp_error(error)


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    log.exception("unhandled error in ACP request %s", getattr(g, "_acp_request_id", "?"))
    return _handle_acp_error(ProcessingError("An unexpected error occurred; it has been logged."))


def make_blueprints(url_prefix: str, *, carts: bool = False) -> tuple[Blueprint, Blueprint]:
    """The checkout blueprint (named ``acp``, also the ``flask acp`` CLI group;
    with ``carts``, also the Cart API's ``/carts`` routes) and the discovery
    blueprint (``/.well-known/acp.json``, no auth)."""
    bp = Blueprint("acp", __name__, url_prefix=url_prefix or None, cli_group="acp")
    bp.before_request(_before_request)
    bp.after_request(_after_request)
    bp.teardown_request(_teardown_request)
    session = "/checkout_sessions/<checkout_session_id>"
    routes: list[tuple[str, t.Callable[..., Response], str]] = [
        ("/checkout_sessions", create_checkout_session, "POST"),
        (session, update_checkout_session, "POST"),
        (session, get_checkout_session, "GET"),
        (f"{session}/complete", complete_checkout_session, "POST"),
        (f"{session}/cancel", cancel_checkout_session, "POST"),
    ]
    if carts:
        cart = "/carts/<cart_id>"
        routes += [("/carts", create_cart, "POST"), (cart, get_cart, "GET"), (cart, update_cart, "PUT"),
                   (f"{cart}/cancel", cancel_cart, "POST")]
    for rule, view, method in routes:
        # merge_slashes=False: "//" is a JSON 404, not Werkzeug's HTML 308 redirect
        bp.add_url_rule(rule, view_func=view, methods=[method], provide_automatic_options=False,
                        merge_slashes=False)
    bp.register_error_handler(ACPError, _handle_acp_error)
    bp.register_error_handler(HTTPException, _handle_http_exception)
    bp.register_error_handler(Exception, _handle_unexpected)

    cli.register(bp.cli)

    well_known = Blueprint("acp_discovery", __name__)
    well_known.add_url_rule(DISCOVERY_PATH, view_func=discovery, methods=["GET"])
    well_known.after_request(_after_request)
    well_known.register_error_handler(HTTPException, _handle_http_exception)
    return bp, well_known


#: where the discovery document is served (discovery RFC)
DISCOVERY_PATH = "/.well-known/acp.json"


def install_routing_errors(app: Flask, url_prefix: str, *, paths: tuple[str, ...] = ()) -> None:
    """JSON 404/405 for unknown paths and wrong methods under the ACP prefix
    and its ``/webhooks/`` and on ``paths`` (the probes, the metrics, the MCP
    endpoint), and a JSON 400 for a ``Host`` outside Flask's ``TRUSTED_HOSTS``
    there and on discovery (blueprint handlers never see routing errors).
    Other paths keep the host app's own handlers."""
    roots = (url_prefix,) if url_prefix else ("/checkout_sessions", "/carts")
    below = (*(root + "/" for root in roots), f"{url_prefix}/webhooks/")

    def under_prefix() -> bool:
        return request.path in (*roots, DISCOVERY_PATH, *paths) or request.path.startswith(below)

    for code in (404, 405, SecurityError):
        host_handlers = dict(app.error_handler_spec.get(None, {}).get(
            code if isinstance(code, int) else 400, {}))

        def handler(exc: HTTPException, _host: dict[type, t.Any] = host_handlers) -> t.Any:
            if under_prefix():
                response = secure_headers(_handle_http_exception(exc))
                response.headers.setdefault("Cache-Control", "no-store")
                return response
            for fn in _host.values():
                return fn(exc)
            return exc

        app.register_error_handler(code, handler)


__all__ = ["check_body_size", "check_transport", "client_scheme_and_addr", "install_routing_errors",
           "make_blueprints", "read_body", "to_flask"]
