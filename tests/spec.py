"""Access to the official ACP spec files, read in place (never copied).

The folder comes from ``ACP_SPEC_DIR`` (default ``../shared/acp-spec`` next to
the repository). Outside CI a missing folder skips the tests that need it;
under ``CI=true`` it is an error.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import typing as t

import jsonschema
import pytest
import referencing
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_DIR = pathlib.Path(os.environ.get("ACP_SPEC_DIR", ROOT.parent / "shared" / "acp-spec"))
VERSION = "2026-04-17"


def require_spec() -> pathlib.Path:
    if not (SPEC_DIR / VERSION).is_dir():
        message = f"ACP spec files not found at {SPEC_DIR} (set ACP_SPEC_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SPEC_DIR


#: every version served, newest first; ``API-Version`` aliases -> their version
VERSIONS = ("2026-04-17", "2026-01-30", "2026-01-16", "2025-12-12", "2025-09-29")
ALIASES = {"2025-09-12": "2025-09-29"}


def folder(version: str) -> str:
    """The spec folder a version's responses are validated against. 2025-09-29
    uses the as-published copy: the HEAD copy's ``Item.quantity`` uses
    draft-04 ``exclusiveMinimum: true``, invalid in 2020-12 (``quantity: 1``
    fails), see ``acp-spec/README.md``."""
    version = ALIASES.get(version, version)
    return "2025-09-29-as-published" if version == "2025-09-29" else version


@functools.cache
def bundle(version: str = VERSION) -> dict[str, t.Any]:
    """The checkout JSON Schema bundle of ``version``. For 2025-09-29 the
    as-published copy, with its one defect patched in memory: its
    ``CheckoutSessionBase`` forbids extra properties and lacks ``order``, so
    no ``CheckoutSessionWithOrder`` can validate (every later bundle lists
    ``order`` in the base; we add it the same way)."""
    path = require_spec() / folder(version) / "json-schema" / "schema.agentic_checkout.json"
    schema = t.cast(dict[str, t.Any], json.loads(path.read_text()))
    base = schema["$defs"]["CheckoutSessionBase"]
    if "order" not in base["properties"]:
        base["properties"]["order"] = {"$ref": "#/$defs/Order"}
    return schema


@functools.cache
def webhook_schema(version: str) -> dict[str, t.Any]:
    """The ``components`` of a version's webhook OpenAPI file (before
    2026-04-17: self-contained legacy ``WebhookEvent``/``EventDataOrder``)."""


    path = require_spec() / folder(version) / "openapi" / "openapi.agentic_checkout_webhook.yaml"
    return t.cast(dict[str, t.Any], yaml.safe_load(path.read_text()))


def validate_legacy_event(body: t.Any, version: str) -> None:
    """Raise unless ``body`` is a valid ``WebhookEvent`` of ``version``'s
    webhook OpenAPI file (versions before 2026-04-17)."""
    document = webhook_schema(version)
    schema = {"$ref": "#/components/schemas/WebhookEvent", "components": document["components"]}
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = list(validator.iter_errors(body))
    if errors:
        raise AssertionError(f"not a valid {version} WebhookEvent: {errors[0].message}\n{json.dumps(body)}")


@functools.cache
def examples(version: str = VERSION) -> dict[str, t.Any]:
    path = require_spec() / folder(version) / "examples" / "examples.agentic_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


@functools.cache
def _validator(definition: str, version: str) -> jsonschema.Draft202012Validator:
    schema = bundle(version)
    resource = referencing.Resource.from_contents(schema)
    registry = referencing.Registry().with_resource(schema.get("$id", "urn:acp"), resource)
    return jsonschema.Draft202012Validator(
        {"$ref": f"{schema.get('$id', 'urn:acp')}#/$defs/{definition}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def validate(body: t.Any, definition: str, version: str = VERSION) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid ``definition``."""
    version = ALIASES.get(version, version)
    errors = sorted(_validator(definition, version).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        raise AssertionError(
            f"response is not a valid {definition} ({version}): {first.message} "
            f"at {'/'.join(map(str, first.absolute_path))}\n{json.dumps(body)[:2000]}")


@functools.cache
def _cart_validator(definition: str) -> jsonschema.Draft202012Validator:
    """A validator of ``schema.cart.json#/$defs/<definition>`` (2026-04-17),
    whose references to ``schema.agentic_checkout.json`` resolve to the
    checkout bundle beside it."""
    folder_path = require_spec() / VERSION / "json-schema"
    cart = json.loads((folder_path / "schema.cart.json").read_text())
    checkout = json.loads((folder_path / "schema.agentic_checkout.json").read_text())
    base = cart["$id"].rsplit("/", 1)[0]
    registry = referencing.Registry().with_resources([
        (cart["$id"], referencing.Resource.from_contents(cart)),
        (f"{base}/schema.agentic_checkout.json", referencing.Resource.from_contents(checkout)),
    ])
    return jsonschema.Draft202012Validator({"$ref": f"{cart['$id']}#/$defs/{definition}"}, registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_cart(body: t.Any, definition: str = "Cart") -> None:
    """Raise unless ``body`` is a valid ``definition`` of ``schema.cart.json``."""
    errors = sorted(_cart_validator(definition).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        raise AssertionError(f"not a valid {definition}: {first.message} at "
                             f"{'/'.join(map(str, first.absolute_path))}\n{json.dumps(body)[:2000]}")


@functools.cache
def cart_openapi() -> dict[str, t.Any]:
    """``openapi.cart.yaml`` (2026-04-17)."""
    path = require_spec() / VERSION / "openapi" / "openapi.cart.yaml"
    return t.cast(dict[str, t.Any], yaml.safe_load(path.read_text()))


def cart_operation(method: str, path: str) -> dict[str, t.Any]:
    """The ``openapi.cart.yaml`` operation serving ``method`` on ``path``
    (``/carts``, ``/carts/<id>`` or ``/carts/<id>/cancel``, any prefix before)."""
    tail = path[path.index("/carts"):]
    parts = tail.strip("/").split("/")
    template = "/carts" + ("/{id}" if len(parts) > 1 else "") + ("/cancel" if len(parts) > 2 else "")
    return t.cast(dict[str, t.Any], cart_openapi()["paths"][template][method.lower()])


def validate_cart_response(method: str, path: str, status: int, body: t.Any,
                           version: str | None = VERSION) -> None:
    """Raise unless a success is one the ``openapi.cart.yaml`` operation
    declares (its status) with a valid ``Cart``, or an error is a valid
    ``Error`` (of ``version``, the request's ``API-Version``)."""
    if status >= 400:
        validate_response(path, status, body, version)
        return
    responses = cart_operation(method, path)["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not declared ({sorted(responses)})"
    validate_cart(body)


def validate_response(path: str, status: int, body: t.Any, version: str | None = VERSION) -> None:
    """Validate an ACP response by what it is (discovery, error or session)
    against the schema of ``version``, the request's ``API-Version`` (a
    version we do not serve, or none: the newest, as the error claims no other)."""
    version = ALIASES.get(version or "", version)
    if version not in VERSIONS or (isinstance(body, dict) and body.get("code") in (
            "missing_api_version", "unsupported_api_version")):
        version = VERSION  # a version error answers in no version the agent asked for
    if path.endswith("/.well-known/acp.json") and status == 200:
        validate(body, "DiscoveryResponse")
    elif status >= 400:
        validate(body, "Error", version)
    elif isinstance(body, dict) and body.get("status") == "completed":
        validate(body, "CheckoutSessionWithOrder", version)
    else:
        validate(body, "CheckoutSession", version)
