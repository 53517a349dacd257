"""Fuzzing: schemathesis generates requests from each served version's
official OpenAPI file (read in place from ``ACP_SPEC_DIR``) and sends them to
the app over real HTTP.

Per version, each of the five operations gets ``POSITIVE`` examples (valid
per the OpenAPI file) and ``NEGATIVE`` ones (invalid bodies, headers, path
values), about half of them on path ids of real sessions (created from the
version's own create example) and half of the positive ones with a fresh
``Idempotency-Key`` (and a currency the store sells), so that create,
update, complete and cancel reach the core. Every response must pass:

- ``not_a_server_error`` (no 5xx);
- ``response_schema_conformance`` against the version's OpenAPI file, with
  the spec's own known defects patched in memory first (:data:`KNOWN_DEFECTS`,
  each listed in the README's "Fuzzing"): nothing else is tolerated;
- the version's JSON Schema bundle (``tests.spec.validate_response``), the
  schema every other test holds responses to.

At least :data:`MIN_REQUESTS` requests per version (2,000 in all); the
``timeout`` mark bounds the time. The Cart API (``openapi.cart.yaml``, its
JSON Schema files inlined) is fuzzed the same way on an app with carts.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import json
import os
import time
import typing as t
import uuid

import pytest
import requests
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.spec import VERSIONS
from tests.spec import examples
from tests.spec import folder
from tests.spec import require_spec
from tests.spec import validate_response

#: generated requests per operation and mode (5 operations: 400 per version)
EXAMPLES = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 30}
MIN_REQUESTS = 400
#: real sessions per version whose ids the generated paths may use
POOL = 6
SIGNING_SECRET = "fuzz-signing-secret-0123456789abcdef"

JSON = dict[str, t.Any]


# --- the spec's known defects, patched in memory before validating against the OpenAPI file -----


def _order_in_session_base(doc: JSON) -> None:
    """``CheckoutSessionWithOrder`` = allOf(``CheckoutSessionBase``, {order}) while the base has
    ``additionalProperties: false`` and no ``order``: no completed session can validate, in every
    OpenAPI file (acp-spec README; digest §20.2). The JSON Schema bundles (from 2025-12-12) list
    ``order`` in the base; so does the patch."""
    base = doc["components"]["schemas"]["CheckoutSessionBase"]
    base["properties"].setdefault("order", {"$ref": "#/components/schemas/Order"})


def _complete_may_answer_without_order(doc: JSON) -> None:
    """Complete's 200 is ``CheckoutSessionWithOrder`` (``order`` required), but a declined payment,
    a 3-D Secure request or a price change answers the session without an order, as the spec's
    own declined example does (digest §20.3; README "Complete's non-happy paths"): the 200 may
    also be a ``CheckoutSession``."""
    content = doc["paths"]["/checkout_sessions/{checkout_session_id}/complete"]["post"]["responses"]["200"]
    schema = content["content"]["application/json"]["schema"]
    content["content"]["application/json"]["schema"] = {
        "anyOf": [schema, {"$ref": "#/components/schemas/CheckoutSession"}]}


def _fulfillment_option_amounts_are_integers(doc: JSON) -> None:
    """2025-09-29 as published: fulfillment options' ``subtotal``, ``tax`` and ``total`` are
    strings; every amount elsewhere is an integer, and the repo fixed them to integers (PR #3)."""
    for name in ("FulfillmentOptionShipping", "FulfillmentOptionDigital"):
        for amount in ("subtotal", "tax", "total"):
            prop = doc["components"]["schemas"][name]["properties"].get(amount)
            if prop is not None and prop.get("type") == "string":
                prop["type"] = "integer"


def _json_schema_fields_missing_from_the_openapi(doc: JSON) -> None:
    """2026-04-17: the OpenAPI file lacks what its JSON Schema bundle (and examples) have:
    ``Error.supported_versions`` (RFC §2.1, PR #99), ``Address.company``,
    ``OrderConfirmation.order_notes``, ``Order.client_reference_id`` (digest §20.24)."""
    schemas = doc["components"]["schemas"]
    additions = {"Error": {"supported_versions": {"type": "array", "items": {"type": "string"}}},
                 "Address": {"company": {"type": "string"}},
                 "OrderConfirmation": {"order_notes": {"type": "string"}},
                 "Order": {"client_reference_id": {"type": "string"}}}
    for name, props in additions.items():
        if name in schemas:
            schemas[name].setdefault("properties", {}).update(
                {k: v for k, v in props.items() if k not in schemas[name].get("properties", {})})


#: version -> the patches applied to its OpenAPI file (the README lists the same)
_EVERY_VERSION = (_order_in_session_base, _complete_may_answer_without_order)
KNOWN_DEFECTS: dict[str, tuple[cabc.Callable[[JSON], None], ...]] = {
    "2026-04-17": (*_EVERY_VERSION, _json_schema_fields_missing_from_the_openapi),
    "2026-01-30": _EVERY_VERSION,
    "2026-01-16": _EVERY_VERSION,
    "2025-12-12": _EVERY_VERSION,
    "2025-09-29": (*_EVERY_VERSION, _fulfillment_option_amounts_are_integers),
}


def openapi(version: str) -> JSON:
    """The version's checkout OpenAPI file, read in place, with its known defects patched."""
    path = require_spec() / folder(version) / "openapi" / "openapi.agentic_checkout.yaml"
    document = t.cast(JSON, yaml.safe_load(path.read_text()))
    for patch in KNOWN_DEFECTS[version]:
        patch(document)
    return document


# --- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> cabc.Iterator[tuple[Flask, str]]:
    """One app for every version: rate limits off (they would answer most of
    the run with 429), agent-one's signatures checked in ``log`` mode (the
    generated ``Signature``/``Timestamp`` headers go through the checks)."""
    app = build_app(tmp_path_factory.mktemp("fuzz"), ACP_RATE_LIMITS_ENABLED=False, ACP_AGENTS={
        "agent-one": {"api_keys": [AGENT_KEY], "signature_policy": "log",
                      "signature_keys": [SIGNING_SECRET]},
        "agent-two": {"api_keys": [OTHER_KEY]}})
    with serve_app(app) as base:
        yield app, base
    app.extensions["acp"].webhooks.close()


def session_pool(base: str, version: str, http: requests.Session) -> list[str]:
    """Ids of sessions made from the version's own create example."""
    body = examples(version)["create_checkout_session_request"]
    ids = []
    for i in range(POOL):
        response = http.post(f"{base}/checkout_sessions", data=json.dumps(body), timeout=30, headers={
            "Authorization": f"Bearer {AGENT_KEY}", "API-Version": version,
            "Content-Type": "application/json", "Idempotency-Key": f"pool-{version}-{i}-{time.time()}"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _fresh(case: t.Any) -> t.Any:
    """A generated case with a fresh ``Idempotency-Key`` (generated keys are
    short and repeat: most would replay or conflict) and, on a create, a
    currency the store sells (the OpenAPI's ``currency`` is any string)."""
    if case.headers is not None and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    creates = case.operation.path == "/checkout_sessions"
    if creates and isinstance(case.body, dict) and "currency" in case.body:
        case.body = {**case.body, "currency": "usd"}
    return case


@pytest.mark.timeout(300)
@pytest.mark.parametrize("version", VERSIONS)
def test_fuzz_the_versions_openapi(server: tuple[Flask, str], version: str) -> None:
    _, base = server
    schema = schemathesis.openapi.from_dict(openapi(version))
    http = requests.Session()
    pool = session_pool(base, version, http)
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "API-Version": version}
    sent: list[int] = []
    problems: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        takes_id = "{checkout_session_id}" in operation.path
        for mode, count in EXAMPLES.items():
            strategy = operation.as_strategy(generation_mode=mode, headers=copy.deepcopy(headers))
            if takes_id:
                strategy = st.one_of(strategy, st.sampled_from(pool).flatmap(
                    lambda sid, m=mode, op=operation: op.as_strategy(
                        generation_mode=m, headers=copy.deepcopy(headers),
                        path_parameters={"checkout_session_id": sid})))
            if mode is GenerationMode.POSITIVE:
                strategy = st.one_of(strategy, strategy.map(_fresh))

            @settings(max_examples=count, deadline=None, database=None,
                      derandomize=os.environ.get("ACP_FUZZ_RANDOM") != "1",
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: t.Any) -> None:
                response = case.call(base_url=base, session=http, timeout=30)
                sent.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                content_type = response.headers.get("content-type", [""])[0]
                assert content_type.startswith("application/json"), response.text
                try:
                    validate_response(case.formatted_path, response.status_code, response.json(), version)
                except AssertionError as exc:
                    problems.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}")
                    raise

            run()

    statuses = sorted(set(sent))
    print(version, len(sent), {s: sent.count(s) for s in statuses})
    assert len(sent) >= MIN_REQUESTS, (len(sent), statuses)
    assert not problems
    assert any(s in (200, 201) for s in statuses), statuses  # the fuzzer reached the core


def test_a_key_reused_in_another_version_is_a_conflict(server: tuple[Flask, str]) -> None:
    """Found by this fuzzing: the same ``Idempotency-Key`` and body sent in
    2026-01-16, then in 2025-12-12 (their create bodies look alike) replayed
    the 2026-01-16 session to the 2025-12-12 request. The key's answer is in
    one version: another version is a conflict (409 before 2026-04-17)."""
    _, base = server
    body = json.dumps(examples("2025-12-12")["create_checkout_session_request"])
    key = f"reused-{time.time()}"

    def create(version: str) -> requests.Response:
        response = requests.post(f"{base}/checkout_sessions", data=body, timeout=30, headers={
            "Authorization": f"Bearer {OTHER_KEY}", "API-Version": version,
            "Content-Type": "application/json", "Idempotency-Key": key})
        validate_response("/checkout_sessions", response.status_code, response.json(), version)
        return response

    assert create("2026-01-16").status_code == 201
    assert create("2026-01-16").headers["Idempotent-Replayed"] == "true"
    conflict = create("2025-12-12")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"


# --- the Cart API (2026-04-17, optional) ------------------------------------------------------------


def cart_openapi_bundled() -> JSON:
    """``openapi.cart.yaml`` with the JSON Schema files it points to
    (``schema.cart.json``, and ``schema.agentic_checkout.json`` that one points to)
    inlined as ``components.schemas``, for a generator that reads one document."""
    root = require_spec() / "2026-04-17"
    document = t.cast(JSON, yaml.safe_load((root / "openapi" / "openapi.cart.yaml").read_text()))
    defs: JSON = {}
    for name in ("schema.agentic_checkout.json", "schema.cart.json"):
        defs.update(json.loads((root / "json-schema" / name).read_text())["$defs"])
    document["components"]["schemas"] = defs

    def local(node: t.Any) -> t.Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and "#/$defs/" in ref:
                node = {**node, "$ref": "#/components/schemas/" + ref.rsplit("/", 1)[1]}
            return {k: local(v) for k, v in node.items()}
        if isinstance(node, list):
            return [local(v) for v in node]
        return node

    return t.cast(JSON, local(document))


def _known_items(case: t.Any) -> t.Any:
    """A generated cart body whose items are ones the store sells (generated ids
    never are: every cart would be a 422), with a fresh ``Idempotency-Key``."""
    case = _fresh(case)
    if isinstance(case.body, dict) and isinstance(case.body.get("line_items"), list):
        case.body = {**case.body, "line_items": [{"id": item_id} for item_id in ("item_123", "item_456")]}
    return case


@pytest.mark.timeout(300)
def test_fuzz_the_cart_openapi(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every cart operation of ``openapi.cart.yaml``, positive and negative, on
    an app with carts: no 5xx, every answer valid per the file (and per
    ``schema.cart.json``: the validating client's rules)."""
    from tests.spec import validate_cart_response

    app = build_app(tmp_path_factory.mktemp("fuzz-carts"), ACP_RATE_LIMITS_ENABLED=False,
                    ACP_CARTS_ENABLED=True)
    schema = schemathesis.openapi.from_dict(cart_openapi_bundled())
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "API-Version": "2026-04-17"}
    sent: list[int] = []
    with serve_app(app) as base:
        http = requests.Session()
        pool = []
        for i in range(POOL):
            response = http.post(f"{base}/carts", json={"line_items": [{"id": "item_123"}]}, timeout=30,
                                 headers={**headers, "Idempotency-Key": f"cart-pool-{i}-{time.time()}"})
            assert response.status_code == 201, response.text
            pool.append(response.json()["id"])
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, count in EXAMPLES.items():
                strategy = operation.as_strategy(generation_mode=mode, headers=copy.deepcopy(headers))
                if "{id}" in operation.path:
                    strategy = st.one_of(strategy, st.sampled_from(pool).flatmap(
                        lambda cid, m=mode, op=operation: op.as_strategy(
                            generation_mode=m, headers=copy.deepcopy(headers), path_parameters={"id": cid})))
                if mode is GenerationMode.POSITIVE:
                    strategy = st.one_of(strategy, strategy.map(_known_items))

                @settings(max_examples=count, deadline=None, database=None,
                          derandomize=os.environ.get("ACP_FUZZ_RANDOM") != "1",
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: t.Any) -> None:
                    response = case.call(base_url=base, session=http, timeout=30)
                    sent.append(response.status_code)
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                    validate_cart_response(case.method, case.formatted_path, response.status_code,
                                           response.json())

                try:
                    run()
                except Unsatisfiable:
                    # GET /carts/{id}: any path string is valid and the headers are fixed,
                    # so there is nothing a negative case could make invalid
                    assert (mode, operation.method) == (GenerationMode.NEGATIVE, "get"), operation.path
    statuses = {s: sent.count(s) for s in sorted(set(sent))}
    print("carts", len(sent), statuses)
    assert len(sent) >= 250, statuses
    assert 201 in statuses, statuses  # the fuzzer reached the core
    assert 200 in statuses, statuses
