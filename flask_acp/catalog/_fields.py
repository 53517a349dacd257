"""Marshmallow fields and error formatting shared by the feed and store loaders.

Money never goes through a float: :class:`MinorUnits` accepts only JSON
integers and :class:`DecimalString` only decimal strings (``"0.0875"``), each
with an error message that says so when it meets a float.
"""

from __future__ import annotations

import collections.abc as cabc
import decimal
import re
import typing as t

from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

_DECIMAL_RE = re.compile(r"\d+(\.\d+)?")


class StrictInt(fields.Integer):
    """A JSON integer (``true``, ``2.0`` and ``"2"`` are refused), ``>= minimum``."""

    what = "an integer"

    def __init__(self, *, minimum: int = 0, **kwargs: t.Any) -> None:
        super().__init__(strict=True, validate=validate.Range(min=minimum), **kwargs)

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> int:
        if isinstance(value, float):
            raise ValidationError(f"must be {self.what}, not the float {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"must be {self.what}, not {type(value).__name__} {value!r}")
        return super()._deserialize(value, attr, data, **kwargs)


class MinorUnits(StrictInt):
    """A money amount: a JSON integer of ISO 4217 minor units (``1999`` = $19.99), >= 0."""

    what = "an integer amount in minor units (e.g. 1999 for 19.99)"


class DecimalString(fields.Field[decimal.Decimal]):
    """A fraction as a decimal string (``"0.0875"`` = 8.75 %), ``0 <= x < 1``,
    deserialized to :class:`decimal.Decimal`. Floats are refused."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any,
                     **kwargs: t.Any) -> decimal.Decimal:
        if isinstance(value, float):
            raise ValidationError(
                f'must be a decimal string like "0.0875", not the float {value!r}'
            )
        if not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
            raise ValidationError(f'must be a decimal string like "0.0875", not {value!r}')
        rate = decimal.Decimal(value)
        if rate >= 1:
            raise ValidationError(f"must be a fraction below 1 (8.75 % is \"0.0875\"), not {value}")
        return rate


def flatten_errors(messages: t.Any, prefix: str = "") -> cabc.Iterator[tuple[str, str]]:
    """Turn marshmallow's nested error dict into ``(path, message)`` pairs,
    paths like ``products[2].variants[0].price.amount``."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            yield from flatten_errors(value, path)
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            yield from flatten_errors(message, prefix)
    else:
        yield prefix, str(messages)
