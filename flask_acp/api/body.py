"""Request bodies: strict JSON in, a core input out, and the RFC 9535 JSONPath
of the first problem (``Error.param``)."""

from __future__ import annotations

import json
import re
import typing as t

from marshmallow import Schema
from marshmallow import ValidationError

from ..errors import InvalidRequestError
from ..errors import UnsupportedMediaTypeError
from ..versions.attribution import PII_NOT_ALLOWED

#: deepest nesting accepted in a request body (ACP bodies need about 6 levels)
MAX_DEPTH = 32

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or any ``+json`` type (RFC 6839), parameters ignored."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def read_json(raw: bytes, *, content_type: str | None, content_encoding: str | None,
              optional: bool) -> tuple[t.Any, bool]:
    """The parsed JSON object and whether a body was sent.

    UTF-8 only (RFC 8259), no ``NaN``/``Infinity``, no key twice in one
    object (parsers disagree on which one wins, so an idempotency fingerprint
    or a signature could cover another body than the one applied), nesting at
    most :data:`MAX_DEPTH`, no lone surrogates, an object at the top.

    :raises InvalidRequestError: missing (when not ``optional``) or invalid JSON (400).
    :raises UnsupportedMediaTypeError: not JSON, or content-encoded (415).
    """
    if not raw.strip():
        if optional:
            return {}, False
        raise InvalidRequestError("A JSON request body is required.", code="invalid_json")
    if not is_json_media_type(content_type):
        raise UnsupportedMediaTypeError("The request body must be JSON (Content-Type: application/json).")
    if (content_encoding or "identity").lower() != "identity":
        raise UnsupportedMediaTypeError("Send the request body without Content-Encoding.")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
        _check_json(body)
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json", param="$")
    return body, True


def load(schema: Schema, body: t.Any) -> t.Any:
    """``schema.load(body)``; the first error, in the order of the body's
    fields, becomes a 400 with its JSONPath.

    :raises InvalidRequestError: code ``pii_not_allowed`` (personal data in an
        affiliate attribution), ``invalid_type`` or ``invalid``, ``param`` set.
    """
    try:
        return schema.load(body)
    except ValidationError as exc:
        param, message = jsonpath(exc.messages, body)
        code = "pii_not_allowed" if message == PII_NOT_ALLOWED else \
            "invalid_type" if "Not a valid" in message else "invalid"
        raise InvalidRequestError(f"{param}: {message}", code=code, param=param) from None


def jsonpath(messages: t.Any, body: t.Any, path: str = "$") -> tuple[str, str]:
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
            return jsonpath(messages[key], body, path)
        if isinstance(key, int):
            child = body[key] if isinstance(body, list) and key < len(body) else None
            return jsonpath(messages[key], child, f"{path}[{key}]")
        child = body.get(key) if isinstance(body, dict) else None
        name = str(key)
        segment = f".{name}" if _IDENTIFIER.match(name) else \
            "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"
        return jsonpath(messages[key], child, path + segment)
    if isinstance(messages, list):
        first = messages[0]
        if isinstance(first, (dict, list)):
            return jsonpath(first, body, path)
        return path, str(first)
    return path, str(messages)


def _unique_keys(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    """An object from its members, refusing a key given twice."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not JSON")


def _check_json(value: t.Any) -> None:
    """Refuse bodies nested deeper than :data:`MAX_DEPTH` and strings that are
    not valid Unicode (lone surrogates from ``\\ud800`` escapes).

    :raises ValueError: naming the problem.
    """
    stack: list[tuple[t.Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            for key, child in item.items():
                key.encode("utf-8")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
