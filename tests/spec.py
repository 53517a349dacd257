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


@functools.cache
def bundle(version: str = VERSION) -> dict[str, t.Any]:
    path = require_spec() / version / "json-schema" / "schema.agentic_checkout.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


@functools.cache
def examples(version: str = VERSION) -> dict[str, t.Any]:
    path = require_spec() / version / "examples" / "examples.agentic_checkout.json"
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
    errors = sorted(_validator(definition, version).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        raise AssertionError(
            f"response is not a valid {definition} ({VERSION}): {first.message} "
            f"at {'/'.join(map(str, first.absolute_path))}\n{json.dumps(body)[:2000]}")


def validate_response(path: str, status: int, body: t.Any) -> None:
    """Validate an ACP response by what it is: discovery, error or session."""
    if path.endswith("/.well-known/acp.json") and status == 200:
        validate(body, "DiscoveryResponse")
    elif status >= 400:
        validate(body, "Error")
    elif isinstance(body, dict) and body.get("status") == "completed":
        validate(body, "CheckoutSessionWithOrder")
    else:
        validate(body, "CheckoutSession")
