"""The HTTP surface: the ACP checkout blueprint and the discovery document.

Life cycle: the blueprints are built by :func:`make_blueprints` inside
``ACP.init_app`` and registered on the app there (the checkout one under
``ACP_URL_PREFIX``). Every request then goes through, in order:

1. HTTPS check (outside debug/testing) -> 403 ``https_required``;
2. body size (``ACP_MAX_BODY_BYTES``) -> 413;
3. ``Authorization: Bearer`` (constant-time, every agent's keys) -> 401;
4. ``API-Version`` -> 400 ``missing_api_version`` / ``unsupported_api_version``;
5. for POST: ``Content-Type`` (415), JSON parsing (400), ``Idempotency-Key``;
6. the view: validate the body (400 with a JSONPath ``param``), call the
   checkout service, render the session in the requested version.

Every error is the flat ACP ``Error`` JSON body, never HTML.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import typing as t
import uuid

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from marshmallow import Schema
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from . import cli
from . import i18n
from .errors import ACPError
from .errors import APIVersionError
from .errors import AuthenticationError
from .errors import HTTPSRequiredError
from .errors import InvalidRequestError
from .errors import MethodNotAllowedError
from .errors import NotFoundError
from .errors import PayloadTooLargeError
from .errors import ProcessingError
from .errors import UnsupportedMediaTypeError
from .idempotency import fingerprint
from .idempotency import run_idempotent
from .models import CheckoutSession
from .versions import VERSIONS

if t.TYPE_CHECKING:
    from .extension import ACPState

log = logging.getLogger("flask_acp")


def _state() -> ACPState:
    return t.cast("ACPState", current_app.extensions["acp"])


# --- rendering helpers -------------------------------------------------------------


def json_response(body: t.Any, status: int = 200, headers: t.Mapping[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(data, status=status, headers=dict(headers or {}), mimetype="application/json")


def error_response(exc: ACPError) -> Response:
    return json_response(exc.to_dict(), exc.status, exc.headers)


def _language() -> str:
    return request.accept_languages.best_match(i18n.LANGUAGES) or "en"


def _session_response(session: CheckoutSession, status: int = 200) -> Response:
    state = _state()
    module = VERSIONS[g._acp_version]
    language = g._acp_language
    if "Accept-Language" not in request.headers and session.locale:
        # no header: the session's own locale (e.g. "fr-CA"), when we speak it
        primary = session.locale.replace("_", "-").split("-")[0].lower()
        language = primary if primary in i18n.LANGUAGES else language
    body = module.render_session(
        session,
        handlers=state.payments.handlers(),
        interventions=state.settings.interventions,
        links=state.settings.links,
        language=language,
    )
    return json_response(body, status, {"Content-Language": language})


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _jsonpath(messages: t.Any, body: t.Any, path: str = "$") -> tuple[str, str]:
    """The first error of a marshmallow ``messages`` dict, in the order the
    fields appear in the request ``body``, as (RFC 9535 JSONPath, text)."""
    if isinstance(messages, dict):
        keys = list(messages)
        if isinstance(body, dict):
            order = {k: i for i, k in enumerate(body)}
            keys.sort(key=lambda k: order.get(k, len(order)) if not isinstance(k, int) else k)
        elif all(isinstance(k, int) for k in keys):
            keys.sort()
        key = keys[0]
        if key == "_schema":
            return _jsonpath(messages[key], body, path)
        if isinstance(key, int):
            child = body[key] if isinstance(body, list) and key < len(body) else None
            return _jsonpath(messages[key], child, f"{path}[{key}]")
        child = body.get(key) if isinstance(body, dict) else None
        name = str(key)
        segment = f".{name}" if _IDENTIFIER.match(name) else \
            "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"
        return _jsonpath(messages[key], child, path + segment)
    if isinstance(messages, list):
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _jsonpath(first, body, path)
        return path, str(first)
    return path, str(messages)


# --- request pipeline -------------------------------------------------------------


def _client_scheme_and_addr() -> tuple[str, str | None]:
    hops = _state().settings.trusted_proxy_hops
    if hops:
        protos = [p.strip() for p in request.headers.get("X-Forwarded-Proto", "").split(",") if p.strip()]
        addrs = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        # each header on its own: a proxy may set X-Forwarded-Proto only
        scheme = protos[-hops].lower() if len(protos) >= hops else "http"  # unset: refuse
        return scheme, (addrs[-hops] if len(addrs) >= hops else None)
    return request.scheme, request.remote_addr


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _check_transport() -> None:
    settings = _state().settings
    app = current_app
    if not settings.require_https or app.debug or app.testing:
        return
    scheme, addr = _client_scheme_and_addr()
    if scheme == "https" or (settings.allow_insecure_loopback and _is_loopback(addr)):
        return
    raise HTTPSRequiredError("ACP requests must use HTTPS.")


def _check_body_size() -> None:
    limit = _state().settings.max_body_bytes
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")


def _authenticate() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Send 'Authorization: Bearer <api key>'.",
                                  headers={"WWW-Authenticate": 'Bearer realm="acp"'})
    digest = hashlib.sha256(token.strip().encode()).digest()
    found: str | None = None
    for name, key_digest in _key_digests(_state().settings.agents):
        if hmac.compare_digest(digest, key_digest):
            found = name
    if found is None:
        raise AuthenticationError("The API key is not valid.",
                                  headers={"WWW-Authenticate": 'Bearer realm="acp", error="invalid_token"'})
    return found


@functools.cache
def _key_digests(agents: tuple[t.Any, ...]) -> tuple[tuple[str, bytes], ...]:
    """(agent name, SHA-256 of one of its keys) for every configured key."""
    return tuple((agent.name, hashlib.sha256(key.encode()).digest())
                 for agent in agents for key in agent.api_keys)


def _api_version() -> str:
    supported = list(_state().settings.api_versions)
    version = request.headers.get("API-Version", "").strip()
    if not version:
        raise APIVersionError("The API-Version header is required.", code="missing_api_version",
                              extra={"supported_versions": supported})
    if version not in supported:
        raise APIVersionError(f"API-Version '{version}' is not supported.",
                              code="unsupported_api_version", extra={"supported_versions": supported})
    return version


def _before_request() -> None:
    given = request.headers.get("Request-Id", "")
    g._acp_request_id = given if 0 < len(given) <= 200 else f"req_{uuid.uuid4().hex}"
    g._acp_language = _language()
    _check_transport()
    _check_body_size()
    g._acp_agent = _authenticate()
    g._acp_version = _api_version()


def _after_request(response: Response) -> Response:
    response.headers["Request-Id"] = getattr(g, "_acp_request_id", None) or f"req_{uuid.uuid4().hex}"
    key = request.headers.get("Idempotency-Key")
    if key and request.method == "POST" and len(key) <= 255:
        response.headers["Idempotency-Key"] = key
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _read_json(*, optional: bool) -> tuple[t.Any, bool]:
    """The parsed JSON body and whether one was sent."""
    raw = request.get_data(cache=True)
    if request.content_length is None and len(raw) >= _state().settings.max_body_bytes:
        # werkzeug stops a streamed (chunked) body at the limit without an error;
        # reading past it raises RequestEntityTooLarge (413) if more was sent
        request.stream.read(1)
    if not raw.strip():
        if optional:
            return {}, False
        raise InvalidRequestError("A JSON request body is required.", code="invalid_json")
    if not request.is_json:
        raise UnsupportedMediaTypeError("The request body must be JSON (Content-Type: application/json).")
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise UnsupportedMediaTypeError("Send the request body without Content-Encoding.")
    try:
        text = raw.decode("utf-8")  # RFC 8259: UTF-8, no byte order mark
        body = json.loads(text, parse_constant=_no_constant)
        _check_json(body)
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json", param="$")
    return body, True


#: deepest nesting accepted in a request body (ACP bodies need about 6 levels)
_MAX_DEPTH = 32


def _no_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not JSON")


def _check_json(value: t.Any) -> None:
    """Refuse bodies nested deeper than :data:`_MAX_DEPTH` and strings that are
    not valid Unicode (lone surrogates from ``\\ud800`` escapes).

    :raises ValueError: naming the problem.
    """
    stack: list[tuple[t.Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            for key, child in item.items():
                key.encode("utf-8")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


@functools.cache
def _schema(version: str, operation: str) -> Schema:
    """One (thread-safe, stateless) schema instance per version and operation."""
    return t.cast(Schema, VERSIONS[version].REQUEST_SCHEMAS[operation]())


def _load(operation: str, body: t.Any) -> t.Any:
    schema = _schema(g._acp_version, operation)
    try:
        return schema.load(body)
    except ValidationError as exc:
        param, message = _jsonpath(exc.messages, body)
        code = "invalid_type" if "Not a valid" in message else "invalid"
        raise InvalidRequestError(f"{param}: {message}", code=code, param=param) from None


def _post(operation: str, run: t.Callable[[t.Any], Response], *, optional_body: bool = False) -> Response:
    body, present = _read_json(optional=optional_body)
    state = _state()

    def handler() -> Response:
        return run(_load(operation, body))

    return run_idempotent(
        records=state.storage.idempotency,
        scope=f"{g._acp_agent} {request.path}",
        key=request.headers.get("Idempotency-Key"),
        body_fingerprint=fingerprint(body, present=present),
        lease=state.settings.idempotency_lease,
        retention=state.settings.idempotency_ttl,
        handler=handler,
        render_error=error_response,
    )


# --- views ----------------------------------------------------------------------


def create_checkout_session() -> Response:
    state = _state()
    return _post("create", lambda data: _session_response(
        state.service.create(g._acp_agent, g._acp_version, data), 201))


def update_checkout_session(checkout_session_id: str) -> Response:
    state = _state()
    return _post("update", lambda data: _session_response(
        state.service.update(g._acp_agent, checkout_session_id, data)))


def get_checkout_session(checkout_session_id: str) -> Response:
    return _session_response(_state().service.get(g._acp_agent, checkout_session_id))


def complete_checkout_session(checkout_session_id: str) -> Response:
    state = _state()
    key = request.headers.get("Idempotency-Key") or None
    return _post("complete", lambda data: _session_response(state.service.complete(
        g._acp_agent, checkout_session_id, dataclasses.replace(data, idempotency_key=key))))


def cancel_checkout_session(checkout_session_id: str) -> Response:
    state = _state()
    return _post("cancel", lambda data: _session_response(
        state.service.cancel(g._acp_agent, checkout_session_id, data)), optional_body=True)


def discovery() -> Response:
    state = _state()
    settings = state.settings
    module = VERSIONS[settings.api_versions[0]]
    base = settings.api_base_url
    cache = f"public, max-age={settings.discovery_max_age}"
    if base is None:
        # derived from the request's Host: never let a cache keep it for others
        scheme, _ = _client_scheme_and_addr()
        base = f"{scheme}://{request.host}{settings.url_prefix}"
        cache = "no-store"
    body = module.render_discovery(
        api_base_url=base,
        supported_versions=settings.api_versions,
        currencies=state.adapter.supported_currencies(),
        interventions=settings.interventions,
        languages=i18n.LANGUAGES,
    )
    return json_response(body, headers={"Cache-Control": cache})


# --- errors ---------------------------------------------------------------------


def _handle_acp_error(exc: ACPError) -> Response:
    return error_response(exc)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        return error_response(PayloadTooLargeError("The request body is too large."))
    if status == 404:
        return error_response(NotFoundError("No such ACP endpoint."))
    if status == 405:
        allowed = getattr(exc, "valid_methods", None)
        return error_response(MethodNotAllowedError(
            f"Method {request.method} is not allowed on this endpoint.",
            headers={"Allow": ", ".join(allowed)} if allowed else None))
    if status >= 500:
        return error_response(ProcessingError("Internal error."))
    code = exc.name.lower().replace(" ", "_")
    return error_response(InvalidRequestError(exc.description or exc.name, code=code, status=status))


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    log.exception("unhandled error in ACP request %s", getattr(g, "_acp_request_id", "?"))
    return error_response(ProcessingError("An unexpected error occurred; it has been logged."))


def make_blueprints(url_prefix: str) -> tuple[Blueprint, Blueprint]:
    """The checkout blueprint (named ``acp``, also the ``flask acp`` CLI group)
    and the discovery blueprint (``/.well-known/acp.json``, no auth)."""
    bp = Blueprint("acp", __name__, url_prefix=url_prefix or None, cli_group="acp")
    bp.before_request(_before_request)
    bp.after_request(_after_request)
    bp.add_url_rule("/checkout_sessions", view_func=create_checkout_session, methods=["POST"],
                    provide_automatic_options=False)
    bp.add_url_rule("/checkout_sessions/<checkout_session_id>", view_func=update_checkout_session,
                    methods=["POST"], provide_automatic_options=False)
    bp.add_url_rule("/checkout_sessions/<checkout_session_id>", view_func=get_checkout_session,
                    methods=["GET"], provide_automatic_options=False)
    bp.add_url_rule("/checkout_sessions/<checkout_session_id>/complete",
                    view_func=complete_checkout_session, methods=["POST"], provide_automatic_options=False)
    bp.add_url_rule("/checkout_sessions/<checkout_session_id>/cancel",
                    view_func=cancel_checkout_session, methods=["POST"], provide_automatic_options=False)
    bp.register_error_handler(ACPError, _handle_acp_error)
    bp.register_error_handler(HTTPException, _handle_http_exception)
    bp.register_error_handler(Exception, _handle_unexpected)

    cli.register(bp.cli)

    well_known = Blueprint("acp_discovery", __name__)
    well_known.add_url_rule("/.well-known/acp.json", view_func=discovery, methods=["GET"])
    well_known.after_request(_after_request)
    return bp, well_known


def install_routing_errors(app: Flask, url_prefix: str) -> None:
    """JSON 404/405 for unknown paths and wrong methods under the ACP prefix
    (blueprint handlers never see routing errors). Other paths keep the host
    app's own handlers."""
    root = url_prefix or "/checkout_sessions"

    def under_prefix() -> bool:
        return request.path == root or request.path.startswith(root + "/")

    for code in (404, 405):
        host_handlers = dict(app.error_handler_spec.get(None, {}).get(code, {}))

        def handler(exc: HTTPException, _host: dict[type, t.Any] = host_handlers) -> t.Any:
            if under_prefix():
                response = _handle_http_exception(exc)
                request_id = request.headers.get("Request-Id") or f"req_{uuid.uuid4().hex}"
                response.headers["Request-Id"] = request_id
                response.headers.setdefault("Cache-Control", "no-store")
                return response
            for fn in _host.values():
                return fn(exc)
            return exc

        app.register_error_handler(code, handler)


__all__ = ["install_routing_errors", "make_blueprints"]
