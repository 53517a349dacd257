"""``ACP_HEALTHZ_PATH`` and ``ACP_READYZ_PATH`` (``ACP_HEALTH_ENABLED``), for load balancers.

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves requests;
  it reads nothing.
- ``GET /readyz``: 200 ``{"status": "ready", "checks": {...}}`` when every
  dependency answered (:mod:`flask_acp.ops.health`), else 503
  ``{"status": "unavailable", "checks": {...}}`` with ``Retry-After``
  (seconds). ``checks`` maps ``store``, ``queue`` and ``processor`` to ``ok``,
  ``down`` or ``skipped``: names only, never an error text, a URL or a host.

No authentication, no HTTPS requirement (probes come from inside the
network), ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import typing as t

from flask import Blueprint
from flask import Response

from ..state import current_state
from .health import DOWN
from .health import readiness_checks
from .health import run_checks

#: ``Retry-After`` of a 503 from the readiness probe, seconds
RETRY_AFTER = 5


def _json(body: t.Any, status: int = 200, **headers: str) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def make_blueprint(healthz_path: str, readyz_path: str) -> Blueprint:
    """The blueprint serving both probes (GET and HEAD)."""
    bp = Blueprint("acp_health", __name__)

    @bp.get(healthz_path)
    def healthz() -> Response:
        return _json({"status": "ok"})

    @bp.get(readyz_path)
    def readyz() -> Response:
        state = current_state()
        queue = state.webhooks.queue
        checks = readiness_checks(state.storage, state.payments,
                                  (lambda: queue.connection.ping()) if queue is not None else None)
        results = run_checks(checks, timeout=state.settings.readyz_timeout)
        if DOWN in results.values():
            return _json({"status": "unavailable", "checks": results}, 503,
                         **{"Retry-After": str(RETRY_AFTER)})
        return _json({"status": "ready", "checks": results})

    return bp
