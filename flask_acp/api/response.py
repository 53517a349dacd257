"""The binding-neutral response of the request pipeline."""

from __future__ import annotations

import dataclasses
import json
import re
import typing as t
import uuid

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


_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def request_id(given: str | None) -> str:
    """The ``Request-Id`` of a response: the agent's when it is 1-200
    printable ASCII characters without spaces (so it can be echoed and
    logged safely), else a fresh ``req_<32 hex>``."""
    return given if given and _REQUEST_ID.match(given) else f"req_{uuid.uuid4().hex}"


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
