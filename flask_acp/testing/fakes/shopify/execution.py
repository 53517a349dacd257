"""GraphQL execution: documents are parsed, validated against
``shopify_schema.graphql`` (a subset of the real Admin schema) and executed
with graphql-core; cost and the throttle bucket as Shopify computes them."""

from __future__ import annotations

import collections.abc as cabc
import json
import pathlib
import threading
import typing as t

from graphql import FieldNode
from graphql import GraphQLError
from graphql import GraphQLSchema
from graphql import OperationDefinitionNode
from graphql import OperationType
from graphql import build_schema
from graphql import execute_sync
from graphql import parse
from graphql import validate
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ..base import DropConnection
from ..base import Fault
from .drafts import Drafts
from .model import connection
from .model import json_response
from .model import parse_gid

#: the SDL the fake executes against.
SCHEMA_PATH = pathlib.Path(__file__).parent.parent.parent / "shopify_schema.graphql"
_INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105
_SCHEMA: GraphQLSchema | None = None
_SCHEMA_LOCK = threading.Lock()


def _schema() -> GraphQLSchema:
    global _SCHEMA
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            _SCHEMA = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
        return _SCHEMA


class ShopGraphQL(Drafts):
    """The Admin GraphQL endpoint (a layer of :class:`~flask_acp.testing.fakes.shopify.FakeShopify`)."""

    def _authorized(self, token: str | None) -> bool:
        if not token:
            return False
        if token in self._tokens:
            return True
        expires = self._issued.get(token)
        return expires is not None and self.now() < expires

    def _graphql(self, request: Request, version: str) -> Response:
        raw = request.get_data()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return json_response({"errors": "Invalid JSON in request body"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return json_response({"errors": "Parameter Missing or Invalid"}, 400)
        document_text = body["query"]
        try:
            document = parse(document_text)
        except GraphQLError as exc:
            self.calls["(invalid)"] += 1
            return json_response({"errors": [exc.formatted]})
        operation = _operation(document, body.get("operationName"))
        name = operation.name.value if operation and operation.name else "(anonymous)"
        with self._lock:
            self.calls[name] += 1
            self.documents.setdefault(name, document_text)
            fault = self._take_fault(name)
        if fault is not None and fault.kind in ("status", "throttled", "timeout", "delay"):
            response = self._fault_response(fault, operation)
            if response is not None:
                return response
        if not self._authorized(request.headers.get("X-Shopify-Access-Token")):
            return json_response({"errors": _INVALID_TOKEN}, 401)
        answered = version if version in self.api_versions or version == "unstable" else self.api_versions[0]
        if not (len(version) == 7 and version[4] == "-") and version != "unstable":
            return json_response({"errors": "Not Found"}, 404)
        headers = {"X-Shopify-API-Version": answered}
        errors = validate(_schema(), document)
        if errors or operation is None:
            messages = [e.formatted for e in errors] or [{"message": "Operation not found"}]
            return json_response({"errors": messages}, headers=headers)
        cost = _cost(operation, body.get("variables") or {})
        token = str(request.headers.get("X-Shopify-Access-Token"))
        with self._lock:
            available = self._refill(token)
            if available < cost:
                return json_response(_throttled(cost, available, self.bucket_max, self.bucket_rate),
                                     headers=headers)
            self._buckets[token] = (available - cost, self.clock.monotonic())
            result = execute_sync(_schema(), document, root_value=_Root(self), operation_name=name
                             if operation.name else None, variable_values=body.get("variables") or {})
            self.executed[name] += 1
            status = {"maximumAvailable": self.bucket_max, "currentlyAvailable": available - cost,
                      "restoreRate": self.bucket_rate}
        payload: dict[str, t.Any] = {}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        payload["data"] = result.data
        payload["extensions"] = {"cost": {"requestedQueryCost": cost, "actualQueryCost": cost,
                                          "throttleStatus": status}}
        if fault is not None and fault.kind == "drop":
            raise DropConnection("FakeShopify drop fault")
        if fault is not None and fault.kind == "500_after":
            return json_response({"errors": "Internal Server Error"}, 500)
        return json_response(payload, headers=headers)

    def _fault_response(self, fault: Fault, operation: OperationDefinitionNode | None) -> Response | None:
        params = fault.params
        if fault.kind == "status":
            status = int(params.get("status", 500))
            headers = {"Retry-After": str(params["retry_after"])} if params.get("retry_after") else {}
            body = params.get("body") or {"errors": "Internal Server Error" if status >= 500
                                          else "Exceeded 2 calls per second for api client. Reduce request "
                                               "rates to resume uninterrupted service."}
            return json_response(body, status, headers=headers)
        if fault.kind == "throttled":
            cost = float(params.get("requested_cost", _cost(operation, {}) if operation else 10))
            return json_response(_throttled(cost, float(params.get("currently_available", 0)),
                                            float(params.get("maximum_available", self.bucket_max)),
                                            float(params.get("restore_rate", self.bucket_rate))))
        if fault.kind == "timeout":
            self._hold(fault.seconds)
            raise DropConnection("FakeShopify timeout fault")
        self._hold(fault.seconds)  # delay
        return None

    def _refill(self, token: str) -> float:
        available, last = self._buckets.get(token, (self.bucket_max, self.clock.monotonic()))
        now = self.clock.monotonic()
        return min(self.bucket_max, available + max(0.0, now - last) * self.bucket_rate)

    def _node(self, node_id: t.Any) -> dict[str, t.Any] | None:
        parsed = parse_gid(node_id)
        if parsed is None:
            return None
        kind, number = parsed
        if kind == "ProductVariant" and number in self.variants:
            return self._variant_view(self.variants[number])
        if kind == "InventoryItem" and number in self.variants:
            return self._inventory_item_view(self.variants[number])
        if kind == "Product":
            first = next((v for _, v in sorted(self.variants.items()) if v.product_id == number), None)
            return None if first is None else self._product_view(first)
        if kind == "DraftOrder" and number in self.drafts:
            return self._draft_view(self.drafts[number], count_read=True)
        if kind == "Order" and number in self.orders:
            return self._order_view(self.orders[number])
        return None

    def _shop_view(self) -> dict[str, t.Any]:
        return {"__typename": "Shop", "id": "gid://shopify/Shop/73011", "name": self.shop_name,
                "myshopifyDomain": self.domain, "currencyCode": self.currency,
                "enabledPresentmentCurrencies": sorted(self.fx), "taxesIncluded": self.taxes_included,
                "taxShipping": self.tax_shipping, "url": f"https://{self.domain}"}


class _Root:
    """Root value of an execution: one method per root field (graphql-core's
    default resolver calls ``method(info, **arguments)``); returns plain dicts
    keyed by schema field names, so nested fields resolve by key."""

    def __init__(self, fake: ShopGraphQL) -> None:
        self.fake = fake

    def shop(self, info: t.Any) -> dict[str, t.Any]:
        return self.fake._shop_view()

    def nodes(self, info: t.Any, ids: list[str]) -> list[dict[str, t.Any] | None]:
        return [self.fake._node(i) for i in ids]

    def node(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        return self.fake._node(id)

    def productVariant(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        parsed = parse_gid(id)
        return self.fake._node(id) if parsed and parsed[0] == "ProductVariant" else None

    def products(self, info: t.Any, first: int | None = None, after: str | None = None,
                 query: str | None = None, reverse: bool = False, sortKey: str = "ID") -> dict[str, t.Any]:
        firsts = self.fake._products(query)
        if reverse:
            firsts.reverse()
        if after is not None:
            numbers = [str(v.product_id) for v in firsts]
            firsts = firsts[numbers.index(after) + 1:] if after in numbers else []
        limit = max(0, min(250, first if first is not None else 250))
        nodes = [self.fake._product_view(v) for v in firsts[:limit]]
        return connection(nodes, lambda n: str(n["legacyResourceId"]), has_next=len(firsts) > limit)

    def draftOrder(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        draft = self.fake._lookup_draft(id)
        return None if draft is None else self.fake._draft_view(draft, count_read=True)

    def draftOrders(self, info: t.Any, first: int | None = None, after: str | None = None,
                    query: str | None = None, reverse: bool = False, sortKey: str = "ID") -> dict[str, t.Any]:
        drafts = self.fake._draft_search(query, sortKey, reverse)
        if after is not None:
            numbers = [str(d.number) for d in drafts]
            drafts = drafts[numbers.index(after) + 1:] if after in numbers else []
        limit = max(0, min(250, first if first is not None else 250))
        page, more = drafts[:limit], len(drafts) > limit
        nodes = [self.fake._draft_view(d, count_read=False) for d in page]
        return connection(nodes, lambda n: str(n["legacyResourceId"]), has_next=more)

    def orders(self, info: t.Any, first: int | None = None, after: str | None = None,
               query: str | None = None, reverse: bool = False,
               sortKey: str = "PROCESSED_AT") -> dict[str, t.Any]:
        orders = self.fake._order_search(query, sortKey, reverse)
        if after is not None:
            numbers = [str(o.number) for o in orders]
            orders = orders[numbers.index(after) + 1:] if after in numbers else []
        limit = max(0, min(250, first if first is not None else 250))
        page, more = orders[:limit], len(orders) > limit
        nodes = [self.fake._order_view(o) for o in page]
        return connection(nodes, lambda n: str(n["legacyResourceId"]), has_next=more)

    def order(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        parsed = parse_gid(id)
        if parsed is None or parsed[0] != "Order" or parsed[1] not in self.fake.orders:
            return None
        return self.fake._order_view(self.fake.orders[parsed[1]])

    def draftOrderAvailableDeliveryOptions(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._delivery_options(input)

    def draftOrderCreate(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._create(input)

    def draftOrderUpdate(self, info: t.Any, id: str, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._update(id, input)

    def draftOrderComplete(self, info: t.Any, id: str, paymentGatewayId: str | None = None,
                           sourceName: str | None = None) -> dict[str, t.Any]:
        return self.fake._complete(id)

    def draftOrderDelete(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._delete(input)

    def tagsAdd(self, info: t.Any, id: str, tags: list[str]) -> dict[str, t.Any]:
        return self.fake._tags_add(id, tags)


def _operation(document: t.Any, name: t.Any) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def _cost(operation: OperationDefinitionNode, variables: cabc.Mapping[str, t.Any]) -> float:
    """Shopify-like cost: 10 per mutation field; 1 per query root field, ``nodes`` 1 per id,
    connections their ``first``."""
    cost = 0.0
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode):
            cost += 1
            continue
        if operation.operation is OperationType.MUTATION:
            cost += 10
        elif selection.name.value == "nodes":
            ids = variables.get("ids") if isinstance(variables.get("ids"), list) else []
            cost += max(1, len(t.cast(list[t.Any], ids)))
        elif selection.name.value in ("draftOrders", "orders", "products"):
            cost += 50
        else:
            cost += 1
    return cost


def _throttled(cost: float, available: float, maximum: float, rate: float) -> dict[str, t.Any]:
    return {"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": None,
                                    "throttleStatus": {"maximumAvailable": maximum,
                                                       "currentlyAvailable": available,
                                                       "restoreRate": rate}}}}


