"""ACP 2026-04-17: the wire version plug-in (request schemas in :mod:`.schemas`,
renderers in :mod:`.render`), registered in :data:`flask_acp.versions.VERSIONS`.

Deliberate leniencies are listed in :mod:`.schemas` and the README.
"""

from __future__ import annotations

from ..base import WireVersion
from .carts import render_cart
from .render import render_discovery
from .render import render_event
from .render import render_handler
from .render import render_order
from .render import render_session
from .schemas import CART_SCHEMAS
from .schemas import REQUEST_SCHEMAS

VERSION = "2026-04-17"

#: this version's plug-in
WIRE = WireVersion(
    version=VERSION,
    request_schemas=REQUEST_SCHEMAS,
    render_session=render_session,
    render_order=render_order,
    render_event=render_event,
    render_discovery=render_discovery,
    cart_schemas=CART_SCHEMAS,
    render_cart=render_cart,
)

__all__ = ["VERSION", "WIRE", "render_cart", "render_discovery", "render_event", "render_handler",
           "render_order", "render_session"]
