"""Every GraphQL document the Shopify adapter sends is valid against the FULL
Shopify Admin schema (2025-04 SDL + the hand-written 2025-07+ overlay), and the
fake's SDL is a faithful subset of it.

The schema files are read in place from ``SHOPIFY_SCHEMA_DIR`` (default
``<repo>/../shared/shopify``). Outside CI a missing folder skips these tests;
under ``CI=true`` it is an error.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import typing as t

import pytest
from graphql import GraphQLEnumType
from graphql import GraphQLInputObjectType
from graphql import GraphQLInterfaceType
from graphql import GraphQLObjectType
from graphql import GraphQLSchema
from graphql import OperationDefinitionNode
from graphql import build_schema
from graphql import parse
from graphql import validate

from flask_acp.testing.fake_shopify import SCHEMA_PATH
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp_adapters.shopify import ShopifyAdapter
from flask_acp_adapters.shopify import ShopifyClient
from flask_acp_adapters.shopify import queries
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.test_shopify import AppFactory
from tests.test_shopify import make_app  # noqa: F401 - fixture
from tests.test_shopify import processor  # noqa: F401 - fixture
from tests.test_shopify import purchase
from tests.test_shopify import ready_session
from tests.test_shopify import server  # noqa: F401 - fixture
from tests.test_shopify import shop  # noqa: F401 - fixture

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA_DIR = pathlib.Path(os.environ.get("SHOPIFY_SCHEMA_DIR", ROOT.parent / "shared" / "shopify"))
BASE = "admin-2025-04.graphql"
OVERLAY = "admin-overlay-2025-07plus.graphql"


def _sdl() -> str:
    base, overlay = SCHEMA_DIR / BASE, SCHEMA_DIR / OVERLAY
    if not (base.is_file() and overlay.is_file()):
        message = f"Shopify Admin schema files not found in {SCHEMA_DIR} (set SHOPIFY_SCHEMA_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    text = base.read_text(encoding="utf-8")
    # 2025-07+: orderCancel's `refund: Boolean!` became optional next to `refundMethod`
    # (field arguments cannot be changed by an SDL extension; see the files' README)
    old = "        refund: Boolean!\n"
    assert old in text, "the orderCancel argument the overlay README says to patch is gone"
    new = "        refund: Boolean\n        refundMethod: OrderCancelRefundMethodInput\n"
    text = text.replace(old, new, 1)
    return text + "\n" + overlay.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def admin_schema() -> GraphQLSchema:
    # assume_valid: the real Admin schema breaks a rule graphql-core 3.3 enforces on schemas
    # (deprecated interface fields); we validate documents against it, not the schema itself
    return build_schema(_sdl(), assume_valid=True)


@pytest.fixture(scope="module")
def fake_schema() -> GraphQLSchema:
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def errors_of(schema: GraphQLSchema, document: str) -> list[str]:
    return [e.message for e in validate(schema, parse(document))]


def operation_name(document: str) -> str:
    operation = next(d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode))
    assert operation.name is not None
    return operation.name.value


@pytest.mark.parametrize("document", queries.ALL_DOCUMENTS,
                         ids=[operation_name(d) for d in queries.ALL_DOCUMENTS])
def test_adapter_documents_are_valid_admin_graphql(admin_schema: GraphQLSchema, fake_schema: GraphQLSchema,
                                                   document: str) -> None:
    assert errors_of(admin_schema, document) == []
    assert errors_of(fake_schema, document) == []


def test_everything_sent_during_purchases_is_valid_admin_graphql(
        admin_schema: GraphQLSchema, shop: FakeShopify, make_app: AppFactory) -> None:  # noqa: F811
    app = make_app()
    agent = Agent(app.test_client())
    done, _ = purchase(agent, shop, [{"id": "1001", "quantity": 2}], ADDRESS)
    canceled = ready_session(agent)
    agent.post(f"/checkout_sessions/{canceled['id']}/cancel", {})
    app.test_client().get("/.well-known/acp.json")
    # merchant activity, so that reconcile reads every nested field with values
    shop.fulfill(done["order"]["id"], {1001: 1}, tracking_company="UPS", tracking_number="1Z1",
                 tracking_url="https://ups.example/1Z1", shipment_status="in_transit")
    shop.refund(done["order"]["id"], "1.50", note="scratched")
    shop.cancel(done["order"]["id"])
    janitor = ShopifyAdapter(ShopifyClient(shop.url, access_token=shop.access_token),
                             clock=lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    try:
        janitor.cleanup_abandoned_drafts(3600)
        listed = list(janitor.iter_products())  # the product feed's documents
        assert janitor.read_products([listed[0].id, "gid://shopify/InventoryItem/1001"])
        (update,) = janitor.reconcile_orders(None)
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        assert janitor.reconcile_orders(since) == [update]
    finally:
        janitor.close()
    assert update.canceled
    assert [r.amount for r in update.refunds] == [150]
    assert [(f.status, f.carrier, sum(f.line_items.values())) for f in update.fulfillments] == [
        ("in_transit", "UPS", 2)]  # one unit, under both spellings of the item id
    sent = {name: doc for name, doc in shop.documents.items() if name.startswith("Acp")}
    assert set(sent) == {operation_name(d) for d in queries.ALL_DOCUMENTS}
    for name, document in sent.items():
        assert errors_of(admin_schema, document) == [], name


def test_the_check_has_teeth(admin_schema: GraphQLSchema) -> None:
    assert errors_of(admin_schema, "query { shop { currencyCodes } }")  # misspelt field
    assert errors_of(admin_schema, "query($i: ID!) { draftOrder(id: $i) { ready(x: 1) } }")  # argument
    assert errors_of(admin_schema, "mutation($i: ID!) { draftOrderComplete(id: $i) { paid } }")


def test_fake_schema_is_a_faithful_subset(admin_schema: GraphQLSchema, fake_schema: GraphQLSchema) -> None:
    problems: list[str] = []
    for name, kind in fake_schema.type_map.items():
        if name.startswith("__"):
            continue
        real = admin_schema.type_map.get(name)
        if real is None or type(real) is not type(kind):
            problems.append(f"type {name}")
            continue
        if isinstance(kind, GraphQLEnumType):
            problems += [f"{name}.{v}" for v in set(kind.values) - set(t.cast(GraphQLEnumType, real).values)]
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType):
            real_fields = t.cast(GraphQLObjectType, real).fields
            problems += [f"{name} implements {i.name}" for i in kind.interfaces
                         if i.name not in {r.name for r in t.cast(GraphQLObjectType, real).interfaces}]
            for field_name, field in kind.fields.items():
                real_field = real_fields.get(field_name)
                if real_field is None or str(real_field.type) != str(field.type):
                    problems.append(f"{name}.{field_name}: {field.type}")
                    continue
                for arg_name, arg in field.args.items():
                    real_arg = real_field.args.get(arg_name)
                    if real_arg is None or str(real_arg.type) != str(arg.type):
                        problems.append(f"{name}.{field_name}({arg_name})")
                problems += [f"{name}.{field_name} lacks required ({a})" for a, x in real_field.args.items()
                             if str(x.type).endswith("!") and a not in field.args]
        if isinstance(kind, GraphQLInputObjectType):
            real_inputs = t.cast(GraphQLInputObjectType, real).fields
            for field_name, input_field in kind.fields.items():
                real_input = real_inputs.get(field_name)
                if real_input is None or str(real_input.type) != str(input_field.type):
                    problems.append(f"{name}.{field_name}: {input_field.type}")
            problems += [f"{name} lacks required {f}" for f, x in real_inputs.items()
                         if str(x.type).endswith("!") and f not in kind.fields]
    assert problems == []


