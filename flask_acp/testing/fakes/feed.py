"""A fake agent Feed API (ACP 2026-04-17 ``openapi.feed.yaml``) for tests and demos.

Serves what an agent platform hosts for merchants' catalogs, validating every
request body against the official OpenAPI file (read in place: pass its path)
and every answer it gives too:

=========================  ==================================================
``POST /feeds``            ``CreateFeedRequest`` -> 201 ``FeedMetadata``
``GET /feeds/{id}``        200 ``FeedMetadata`` / 404 ``feed_not_found``
``GET /feeds/{id}/products``  200 ``ProductsResponse`` (the feed's products)
``PATCH /feeds/{id}/products``  ``UpsertProductsRequest`` -> 200
                           ``UpsertProductsResponse``: upsert by ``Product.id``
=========================  ==================================================

A body the schema refuses gets 400 with the spec's flat ``Error`` (``param``:
the JSONPath of the first problem) and is kept in :attr:`FakeFeedService.rejected`;
a request without ``Authorization: Bearer <token>`` (when ``token`` is set) gets
401. Inspection: :attr:`FakeFeedService.feeds` (feed id -> ``{"metadata",
"products": {id: Product}}``), :attr:`FakeFeedService.requests` (``(method,
route, body)`` per request), :meth:`FakeFeedService.patches` (product ids per
accepted ``PATCH``). Faults (:meth:`~flask_acp.testing.fakes.base.FakeServer.fail_next`,
``match`` = a route such as ``"PATCH /feeds/{id}/products"``): the common kinds.

Needs ``jsonschema`` and ``PyYAML``.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import datetime as dt
import json
import os
import pathlib
import secrets
import typing as t

import jsonschema  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from .base import DropConnection
from .base import FakeServer

__all__ = ["DEFAULT_TOKEN", "FakeFeedService"]

#: the bearer token the fake accepts unless told otherwise (configure it as the agent's ``feed_token``).
DEFAULT_TOKEN = "feed-token-0123456789"  # noqa: S105 - a test credential

_ROUTES = (("POST", ("feeds",), "POST /feeds"),
           ("GET", ("feeds", None), "GET /feeds/{id}"),
           ("GET", ("feeds", None, "products"), "GET /feeds/{id}/products"),
           ("PATCH", ("feeds", None, "products"), "PATCH /feeds/{id}/products"))
#: request body schema per route
_REQUEST_SCHEMAS = {"POST /feeds": "CreateFeedRequest", "PATCH /feeds/{id}/products": "UpsertProductsRequest"}


def _json(body: t.Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _jsonpath(path: cabc.Iterable[t.Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class FakeFeedService(FakeServer[None]):
    """The fake Feed API (see the module docstring).

    :param openapi_path: the spec's ``openapi.feed.yaml`` (2026-04-17).
    :param token: the bearer token it accepts; None: no authentication.
    """

    name = "FakeFeedService"

    def __init__(self, openapi_path: str | os.PathLike[str], *, token: str | None = DEFAULT_TOKEN,
                 host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> None:
        super().__init__(host=host, port=port, quiet=quiet)
        document = yaml.safe_load(pathlib.Path(openapi_path).read_text(encoding="utf-8"))
        self.components: dict[str, t.Any] = document["components"]
        self.token = token
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        self.reset()

    def reset(self) -> None:
        """Forget feeds, requests and faults."""
        super().reset()
        with self._lock:
            self.feeds: dict[str, dict[str, t.Any]] = {}
            self.requests: list[tuple[str, str, t.Any]] = []
            self.rejected: list[tuple[str, t.Any, str]] = []
            self._patches: list[tuple[str, list[str]]] = []

    def validator(self, schema: str) -> jsonschema.Draft202012Validator:
        """A validator of ``components.schemas[schema]`` of the OpenAPI file."""
        found = self._validators.get(schema)
        if found is None:
            found = self._validators[schema] = jsonschema.Draft202012Validator(
                {"$ref": f"#/components/schemas/{schema}", "components": self.components},
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        return found

    def patches(self, feed_id: str | None = None) -> list[list[str]]:
        """The product ids of each accepted ``PATCH`` (of one feed, or all), in order."""
        with self._lock:
            return [list(ids) for feed, ids in self._patches if feed_id is None or feed == feed_id]

    def products(self, feed_id: str) -> dict[str, dict[str, t.Any]]:
        """The products of a feed (copies), by id."""
        with self._lock:
            return copy.deepcopy(self.feeds[feed_id]["products"])

    # ----------------------------------------------------------------- HTTP

    def _respond(self, request: Request) -> Response:
        parts = tuple(p for p in request.path.split("/") if p)
        route, feed_id = None, None
        for method, shape, name in _ROUTES:
            if method == request.method and len(shape) == len(parts) and all(
                    s is None or s == p for s, p in zip(shape, parts, strict=True)):
                route, feed_id = name, (parts[1] if len(parts) > 1 else None)
        if route is None:
            return _json({"type": "invalid_request", "code": "not_found",
                          "message": f"No route {request.method} {request.path}"}, 404)
        fault = self._take_fault(route)
        if fault is not None and fault.kind in ("500", "429", "timeout"):
            if fault.kind == "timeout":
                self._hold(fault.seconds)
                raise DropConnection(f"{self.name} timeout fault")
            return _json({"type": "processing_error", "code": "unavailable", "message": "Try again later."},
                         int(fault.kind))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answer(_json({"type": "invalid_request", "code": "unauthorized",
                                       "message": "A valid bearer token is required."}, 401), "Error")
        body: t.Any = None
        if request.method in ("POST", "PATCH"):
            try:
                body = json.loads(request.get_data() or b"null")
            except ValueError:
                return self._refuse(route, None, "$", "The body is not JSON.")
            problem = next(iter(sorted(self.validator(_REQUEST_SCHEMAS[route]).iter_errors(body),
                                       key=lambda e: list(e.absolute_path))), None)
            if problem is not None:
                return self._refuse(route, body, _jsonpath(problem.absolute_path), problem.message)
        with self._lock:
            status, answer, schema = self._handle(route, feed_id, body)
            self.requests.append((request.method, request.path, body))
        if fault is not None and fault.kind == "slow":
            self._hold(fault.seconds)
        if fault is not None and fault.kind == "drop_after":
            raise DropConnection(f"{self.name} dropped the connection")
        if fault is not None and fault.kind == "500_after":
            return _json({"type": "processing_error", "code": "internal", "message": "Internal error."}, 500)
        return self._answer(_json(answer, status), schema)

    def _handle(self, route: str, feed_id: str | None, body: t.Any) -> tuple[int, t.Any, str]:
        now = dt.datetime.fromtimestamp(self.clock.time(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if route == "POST /feeds":
            new_id = f"feed_{secrets.token_hex(6)}"
            metadata = {"id": new_id, "updated_at": now, **({"target_country": body["target_country"]}
                                                             if body.get("target_country") else {})}
            self.feeds[new_id] = {"metadata": metadata, "products": {}}
            return 201, metadata, "FeedMetadata"
        feed = self.feeds.get(t.cast(str, feed_id))
        if feed is None:
            return 404, {"type": "invalid_request", "code": "feed_not_found", "message": "Feed not found",
                         "param": "id"}, "Error"
        if route == "GET /feeds/{id}":
            return 200, feed["metadata"], "FeedMetadata"
        if route == "GET /feeds/{id}/products":
            return 200, {"products": list(feed["products"].values())}, "ProductsResponse"
        for product in body["products"]:
            feed["products"][product["id"]] = product
        feed["metadata"]["updated_at"] = now
        self._patches.append((t.cast(str, feed_id), [p["id"] for p in body["products"]]))
        return 200, {"id": feed_id, "accepted": True}, "UpsertProductsResponse"

    def _refuse(self, route: str, body: t.Any, param: str, message: str) -> Response:
        with self._lock:
            self.rejected.append((route, body, f"{param}: {message}"))
        code = "invalid_product_payload" if route.startswith("PATCH") else "invalid_request"
        return self._answer(_json({"type": "invalid_request", "code": code, "message": message[:500],
                                   "param": param}, 400), "Error")

    def _answer(self, response: Response, schema: str) -> Response:
        """``response``, after checking its body against ``schema`` (a bug of the fake otherwise)."""
        self.validator(schema).validate(json.loads(response.get_data()))
        return response
