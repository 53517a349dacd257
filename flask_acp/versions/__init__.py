"""The registry of ACP wire versions, each a plug-in package with the same
surface (:class:`~flask_acp.versions.base.WireVersion`): request schemas that
load bodies into the core's version-free inputs, and renderers.

Adding a version means adding its package here and one line to
:data:`VERSIONS`; the core, the store and the adapters do not change.
"""

from __future__ import annotations

from . import v2026_04_17
from .base import WireVersion

#: API-Version string -> its plug-in, newest first.
VERSIONS: dict[str, WireVersion] = {v2026_04_17.VERSION: v2026_04_17.WIRE}

__all__ = ["VERSIONS", "WireVersion"]
