"""The catalog as ACP feed JSON Lines (``products.jsonl``: one ``Product`` of
``schema.feed.json`` per line, ACP 2026-04-17)."""

from __future__ import annotations

import collections.abc as cabc
import hashlib
import json
import typing as t

from ..adapter import PlatformAdapter
from ..versions.v2026_04_17.feed import render_product


def product_json(adapter: PlatformAdapter) -> cabc.Iterator[dict[str, t.Any]]:
    """Each product of the adapter's catalog as a feed ``Product`` object, in the
    adapter's order (pages read lazily).

    :raises NotImplementedError: the adapter cannot list its catalog.
    :raises AdapterUnavailableError: the platform cannot answer now.
    """
    for record in adapter.iter_products():
        yield render_product(record)


def encode_line(product: t.Mapping[str, t.Any]) -> str:
    """One JSON Lines line (no newline): compact UTF-8 JSON."""
    return json.dumps(product, separators=(",", ":"), ensure_ascii=False)


def digest(product: t.Mapping[str, t.Any]) -> str:
    """A short fingerprint of a product's feed JSON, keys sorted (what an incremental push compares)."""
    canonical = json.dumps(product, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def write_lines(products: cabc.Iterable[t.Mapping[str, t.Any]], out: t.TextIO) -> int:
    """Write ``products`` to ``out`` as JSON Lines; returns how many."""
    count = 0
    for product in products:
        out.write(encode_line(product) + "\n")
        count += 1
    return count
