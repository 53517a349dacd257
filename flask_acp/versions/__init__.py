"""ACP versions this package speaks, each a module with the same surface:

- ``VERSION``: the ``API-Version`` string;
- ``REQUEST_SCHEMAS``: operation name (``create``, ``update``, ``complete``,
  ``cancel``) -> marshmallow schema loading the body into a checkout input;
- ``render_session(session, *, handlers, interventions, links, language)``;
- ``render_discovery(...)``.

Adding a version means adding a module here and its string to
``flask_acp.config.IMPLEMENTED_VERSIONS``; the domain and the service do not change.
"""

from __future__ import annotations

import types

from . import v2026_04_17

#: API-Version string -> the module implementing it.
VERSIONS: dict[str, types.ModuleType] = {v2026_04_17.VERSION: v2026_04_17}
