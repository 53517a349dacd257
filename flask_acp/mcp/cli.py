"""``flask acp mcp``: the MCP binding as a server of its own.

- ``flask acp mcp --port 8001``: Streamable HTTP at ``http://127.0.0.1:8001/mcp``
  (uvicorn; the path is ``ACP_MCP_PATH``), the same tools, agents, keys, store
  and webhooks as the app's REST API, and its transport rule on every request
  (HTTPS outside debug/testing, ``ACP_TRUSTED_PROXY_HOPS``,
  ``ACP_ALLOW_INSECURE_LOOPBACK``: :class:`~flask_acp.mcp.transport.TransportRule`);
- ``flask acp mcp --stdio``: over stdin/stdout, for an agent that starts the
  server as a subprocess; the agent's API key comes from ``ACP_MCP_API_KEY``.

The command exists whether or not the ``mcp`` SDK is installed; without it,
it stops with one line saying what to install.
"""

from __future__ import annotations

import ipaddress
import logging
import sys

import click
from flask import current_app

from ..errors import AuthenticationError
from ..state import current_state
from . import SDK_MISSING
from . import sdk_available


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(cli: click.Group) -> None:
    """Add ``mcp`` to ``cli`` (the ``acp`` group)."""

    @cli.command("mcp")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
    @click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True)
    @click.option("--path", default=None, help="Endpoint path (default: ACP_MCP_PATH).")
    @click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Serve HTTPS with this certificate (PEM).")
    @click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="The certificate's private key (PEM).")
    @click.option("--stdio", is_flag=True, help="Serve over stdin/stdout instead of HTTP.")
    @click.option("--api-key", envvar="ACP_MCP_API_KEY", default=None,
                  help="With --stdio: the agent's API key (an ACP_AGENTS key; env ACP_MCP_API_KEY).")
    def mcp_command(host: str, port: int, path: str | None, ssl_certfile: str | None,
                    ssl_keyfile: str | None, stdio: bool, api_key: str | None) -> None:
        """Serve the checkout API as MCP tools (ACP's MCP binding).

        Streamable HTTP by default (stateless, JSON responses; agents send
        'Authorization: Bearer <their API key>'), or --stdio.
        """
        if not sdk_available():
            raise click.ClickException(SDK_MISSING)
        from .transport import McpService
        from .transport import TransportRule
        from .transport import serve_http
        from .transport import serve_stdio

        state = current_state()
        settings = state.settings
        if stdio:
            if not api_key:
                raise click.ClickException("--stdio needs the agent's API key: set ACP_MCP_API_KEY "
                                           "(or pass --api-key)")
            try:
                agent = state.pipeline.authenticate(f"Bearer {api_key}")
            except AuthenticationError:
                raise click.ClickException("ACP_MCP_API_KEY is not an API key of any agent in "
                                           "ACP_AGENTS") from None
            # stdout carries the protocol: everything else goes to stderr
            logging.basicConfig(stream=sys.stderr, level=logging.INFO)
            click.echo(f"ACP over MCP on stdio for agent {agent!r}", err=True)
            state.webhooks.start()
            serve_stdio(McpService(state.pipeline, offload=True, stdio_api_key=api_key))
            return
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise click.ClickException("pass both --ssl-certfile and --ssl-keyfile, or neither")
        # every request is checked as REST checks it (TransportRule); this only refuses to
        # start plain HTTP on a public interface with no TLS proxy declared (even in debug)
        transport = TransportRule.of(settings, debug=current_app.debug or current_app.testing)
        if settings.require_https and ssl_certfile is None and not _loopback(host) \
                and not settings.trusted_proxy_hops:
            raise click.ClickException(
                f"refusing plain HTTP on {host} (ACP_REQUIRE_HTTPS): pass --ssl-certfile and "
                "--ssl-keyfile, or listen on 127.0.0.1 behind a TLS proxy (ACP_TRUSTED_PROXY_HOPS)")
        endpoint = path or settings.mcp_path
        scheme = "https" if ssl_certfile else "http"
        click.echo(f"ACP over MCP (Streamable HTTP) on {scheme}://{host}:{port}{endpoint}", err=True)
        if not settings.mcp_enabled:
            click.echo("note: discovery lists the mcp transport only when ACP_MCP_ENABLED is set", err=True)
        state.webhooks.start()
        serve_http(McpService(state.pipeline, offload=True, transport=transport), host=host, port=port,
                   path=endpoint, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
