"""Operations: what load balancers and monitoring read.

- :mod:`flask_acp.ops.health`: the readiness checks (store, queue, processor),
  each bounded by ``ACP_READYZ_TIMEOUT``; no web framework.
- :mod:`flask_acp.ops.routes`: ``ACP_HEALTHZ_PATH`` and ``ACP_READYZ_PATH``
  (``ACP_HEALTH_ENABLED``), JSON without authentication.
- :mod:`flask_acp.ops.metrics`: Prometheus metrics at ``ACP_METRICS_PATH``
  (``ACP_METRICS_ENABLED``, ``pip install 'flask-acp[metrics]'``); the only
  module of the project that imports ``prometheus_client``.
"""

from __future__ import annotations

import importlib.util

#: the one-line error when metrics are enabled without their client library.
METRICS_MISSING = "Prometheus metrics need prometheus-client: pip install 'flask-acp[metrics]'"


def metrics_available() -> bool:
    """Whether ``prometheus_client`` can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None
