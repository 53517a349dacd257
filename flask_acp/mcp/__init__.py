"""ACP over MCP: the checkout API as five MCP tools (ACP 2026-04-17 MCP
binding, ``docs/mcp-binding.md``; ``openrpc/openrpc.agentic_checkout.json``).

- :mod:`flask_acp.mcp.tools`: the binding itself (tool list, argument
  envelope, results and errors) over :class:`flask_acp.api.pipeline.Pipeline`,
  as a server of the official ``mcp`` SDK; no web framework.
- :mod:`flask_acp.mcp.transport`: Streamable HTTP (the SDK's stateless,
  JSON-response transport behind a bearer-token check), standalone with
  uvicorn, and stdio.
- :mod:`flask_acp.mcp.routes`: ``ACP_MCP_PATH`` of the Flask app
  (``ACP_MCP_ENABLED``), each request handed to the same ASGI app.
- :mod:`flask_acp.mcp.cli`: ``flask acp mcp``.

The SDK is an optional dependency (``pip install 'flask-acp[mcp]'``, with
``apispec``): this package imports them only when MCP is served.
"""

from __future__ import annotations

import importlib.metadata

#: the one-line error when the SDK is missing (or too old).
SDK_MISSING = "ACP over MCP needs the MCP SDK (mcp>=2.3): pip install 'flask-acp[mcp]'"


def sdk_available() -> bool:
    """Whether the ``mcp`` SDK is installed, at version 2.3 or later (its
    low-level ``Server`` takes ``on_*`` handlers since 2.0), with ``apispec``
    (the tools' payload schemas), as the ``mcp`` extra installs them."""
    try:
        version = importlib.metadata.version("mcp")
        importlib.metadata.version("apispec")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (2, 3)


def require_sdk() -> None:
    """:raises RuntimeError: the SDK is not installed (:data:`SDK_MISSING`)."""
    if not sdk_available():
        raise RuntimeError(SDK_MISSING)
