"""The registry of ACP wire versions, each a plug-in package with the same
surface (:class:`~flask_acp.versions.base.WireVersion`): request schemas that
load bodies into the core's version-free inputs, and renderers.

Adding a version means adding its package here and one line to
:data:`VERSIONS`; the core, the store and the adapters do not change.
"""

from __future__ import annotations

from . import v2025_09_29
from . import v2025_12_12
from . import v2026_01_16
from . import v2026_01_30
from . import v2026_04_17
from .base import WireVersion

#: API-Version string -> its plug-in, newest first (aliases not included).
VERSIONS: dict[str, WireVersion] = {
    wire.version: wire
    for wire in (v2026_04_17.WIRE, v2026_01_30.WIRE, v2026_01_16.WIRE, v2025_12_12.WIRE, v2025_09_29.WIRE)
}

#: every ``API-Version`` string answered -> the version it means (aliases too).
ALIASES: dict[str, str] = {
    name: wire.version for wire in VERSIONS.values() for name in (wire.version, *wire.aliases)
}

__all__ = ["ALIASES", "VERSIONS", "WireVersion"]
