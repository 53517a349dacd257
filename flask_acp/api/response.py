"""The binding-neutral response of the request pipeline."""

from __future__ import annotations

import dataclasses
import json
import typing as t

from ..errors import ACPError
from .errors import render_error


@dataclasses.dataclass(frozen=True, slots=True)
class ApiResponse:
    """What a binding sends back: HTTP status (MCP maps it), headers, body bytes.

    :ivar status: HTTP status code.
    :ivar headers: response headers (``Content-Type``, ``Retry-After``...).
    :ivar body: the JSON body, UTF-8.
    """

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> t.Any:
        """The body, parsed."""
        return json.loads(self.body)


def json_response(body: t.Any, status: int = 200, headers: t.Mapping[str, str] | None = None) -> ApiResponse:
    """A compact UTF-8 JSON response."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return ApiResponse(status, {"Content-Type": "application/json", **(headers or {})}, data)


def error_response(exc: ACPError, *, status: int | None = None) -> ApiResponse:
    """``exc`` rendered through the error table as the flat ``Error`` body;
    ``status`` overrides the table's HTTP status (a version's own code for
    that cause, e.g. 409 for ``idempotency_conflict`` before 2026-04-17)."""
    rendered = render_error(exc)
    return json_response(rendered.body, status or rendered.status, rendered.headers)
