"""``Idempotency-Key`` handling for every POST (checkout RFC §6, ACP 2026-04-17).

- Missing key: 400 ``idempotency_key_required``; longer than 255: 400 ``invalid``.
- Scope: the authenticated agent + the request path.
- Same key, same body (semantic JSON equality: key order and ``1`` vs ``1.0``
  do not matter; array order and ``null`` vs absent do): the stored status and
  body are replayed with ``Idempotent-Replayed: true``; nothing runs again.
- Same key, another body (or another ``API-Version``: a stored response is in
  the version it was made in): 422 ``idempotency_conflict`` (409 before 2026-04-17).
- Same key while the first request runs: 409 ``idempotency_in_flight`` with
  ``Retry-After`` (seconds). A claim whose worker died is taken over after
  ``ACP_IDEMPOTENCY_LEASE`` seconds.
- 5xx responses, and 409s and 429s (transient by nature), are never stored: a retry runs fresh.
- Stored responses live ``ACP_IDEMPOTENCY_TTL`` seconds (at least 24 h).

Claims and responses (status, headers, body bytes) live in the session
store, so this holds across worker processes and across bindings (REST, MCP).
"""

from __future__ import annotations

import collections.abc as cabc
import hashlib
import json
import time
import typing as t

from ..errors import BusyError
from ..errors import IdempotencyConflictError
from ..errors import InvalidRequestError
from ..store.base import IdempotencyRecords
from .response import ApiResponse

#: response headers stored with a response and replayed with it.
_STORED_HEADERS = ("Content-Type", "Content-Language", "Allow")


def canonical(value: t.Any) -> t.Any:
    """``value`` with integral floats turned into ints (``1.0`` -> ``1``), so
    that numerically equal JSON documents serialize the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def fingerprint(body: t.Any, *, present: bool) -> str:
    """SHA-256 hex of the canonical JSON of a parsed request body
    (``present=False`` for an empty body, which differs from ``{}``)."""
    if not present:
        return "absent"
    text = json.dumps(canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def run_idempotent(
    *,
    records: IdempotencyRecords,
    scope: str,
    key: str | None,
    body_fingerprint: str,
    lease: float,
    retention: float,
    handler: cabc.Callable[[], ApiResponse],
) -> ApiResponse:
    """Run ``handler`` at most once per (``scope``, ``key``) and body.

    :param handler: produces the response (errors already rendered into one).
    :raises InvalidRequestError: key missing or too long (400).
    :raises IdempotencyConflictError: same key, another body.
    :raises BusyError: same key still in flight.
    """
    if not key:
        raise InvalidRequestError("Idempotency-Key header is required",
                                  code="idempotency_key_required")
    if len(key) > 255:
        raise InvalidRequestError("The Idempotency-Key header must be at most 255 characters.",
                                  code="invalid_idempotency_key")
    outcome = records.begin(scope, key, body_fingerprint, now=time.time(), lease=lease,
                            retention=retention)
    if outcome.state == "conflict":
        raise IdempotencyConflictError(
            "Idempotency-Key has already been used with a different request body or API-Version")
    if outcome.state == "in_flight":
        raise BusyError("A request with this Idempotency-Key is currently being processed",
                        code="idempotency_in_flight")
    if outcome.state == "replay":
        return ApiResponse(t.cast(int, outcome.status),
                           {**(outcome.headers or {}), "Idempotent-Replayed": "true"},
                           t.cast(bytes, outcome.body))
    try:
        response = handler()
    except BaseException:
        records.release(scope, key)
        raise
    if response.status >= 500 or response.status in (409, 429):
        records.release(scope, key)
    else:
        records.finish(
            scope, key, status=response.status, body=response.body,
            headers={h: response.headers[h] for h in _STORED_HEADERS if h in response.headers},
            now=time.time(),
        )
    return response
