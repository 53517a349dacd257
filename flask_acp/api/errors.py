"""The one table from error causes to what an agent receives.

Every :class:`~flask_acp.errors.ACPError` the core or the pipeline raises is
rendered here, and only here, as ``(status, headers, body)``: the spec's flat
``Error`` object ``{type, code, message[, param][, supported_versions]}``
(ACP 2026-04-17 ``schema.agentic_checkout.json#/$defs/Error``; the checkout
RFC's status codes). Headers come from the error's cause data:
``Retry-After`` from ``retry_after`` (seconds), ``Allow`` from a method error,
``WWW-Authenticate`` from an authentication error.
"""

from __future__ import annotations

import dataclasses
import typing as t

from .. import errors as e

#: cause -> (HTTP status, spec ``Error.type``); the most specific class wins (MRO order).
ERROR_TABLE: dict[type[e.ACPError], tuple[int, str]] = {
    e.ACPError: (400, "invalid_request"),
    e.InvalidRequestError: (400, "invalid_request"),
    e.APIVersionError: (400, "invalid_request"),
    e.AuthenticationError: (401, "invalid_request"),
    e.InsecureTransportError: (403, "invalid_request"),
    e.NotFoundError: (404, "invalid_request"),
    e.MethodNotAllowedError: (405, "invalid_request"),
    e.SessionClosedError: (405, "invalid_request"),
    e.BusyError: (409, "invalid_request"),
    e.BodyTooLargeError: (413, "invalid_request"),
    e.UnsupportedMediaTypeError: (415, "invalid_request"),
    e.IdempotencyConflictError: (422, "invalid_request"),
    e.UnprocessableError: (422, "invalid_request"),
    # the checkout Error.type enum has no rate-limit type (digest §11.1): a 4xx is invalid_request
    e.RateLimitedError: (429, "invalid_request"),
    e.ProcessingError: (500, "processing_error"),
    e.UnavailableError: (503, "service_unavailable"),
    e.StorageUnavailableError: (503, "service_unavailable"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class RenderedError:
    """An error as the agent receives it.

    :ivar status: HTTP status (or the binding's equivalent).
    :ivar headers: ``Retry-After`` / ``Allow`` / ``WWW-Authenticate`` when they apply.
    :ivar body: the flat ``Error`` object.
    """

    status: int
    headers: dict[str, str]
    body: dict[str, t.Any]


def status_and_type(exc: e.ACPError) -> tuple[int, str]:
    """The HTTP status and spec ``Error.type`` of ``exc``."""
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    raise LookupError(type(exc))  # unreachable: ACPError itself is in the table


def render_error(exc: e.ACPError) -> RenderedError:
    """``exc`` as ``(status, headers, body)``."""
    status, kind = status_and_type(exc)
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    if isinstance(exc, e.MethodNotAllowedError) and exc.allowed:
        headers["Allow"] = ", ".join(exc.allowed)
    if isinstance(exc, e.AuthenticationError):
        headers["WWW-Authenticate"] = exc.challenge
    body: dict[str, t.Any] = {"type": kind, "code": exc.code, "message": exc.message}
    if exc.param is not None:
        body["param"] = exc.param
    body.update(exc.extra)
    return RenderedError(status, headers, body)
