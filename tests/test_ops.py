"""Operations: health probes, Prometheus metrics, read-only CLI views (issue 16)."""

from __future__ import annotations

import pathlib
import typing as t

import requests

from flask_acp.testing import FakePaymentProcessor

from .conftest import build_app
from .conftest import serve_app


class _UnreachableProcessor(FakePaymentProcessor):
    """A processor whose readiness hook cannot reach it."""

    def ready(self) -> None:
        raise ConnectionError("connect to api.psp.example:443 refused (secret sk_live_x)")


def test_healthz_and_readyz_over_http(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    with serve_app(app) as base:
        live = requests.get(f"{base}/healthz", timeout=5)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        assert live.headers["Content-Type"] == "application/json"
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready",
                                "checks": {"store": "ok", "queue": "skipped", "processor": "skipped"}}
        assert ready.headers["Cache-Control"] == "no-store"


def test_readyz_names_the_dependency_that_is_down_and_nothing_else(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, payment_processor=_UnreachableProcessor())
    with serve_app(app) as base:
        ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert ready.json() == {"status": "unavailable",
                            "checks": {"store": "ok", "queue": "skipped", "processor": "down"}}
    assert "psp.example" not in ready.text
    assert "sk_live" not in ready.text


def test_readyz_store_and_queue_down(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_REDIS_URL="redis://127.0.0.1:1/0", ACP_READYZ_TIMEOUT=1.0)
    app.extensions["acp"].storage.sessions.get = _refuse  # the store's file became unreadable
    with serve_app(app) as base:
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": "down", "queue": "down", "processor": "skipped"}
    assert "127.0.0.1:1" not in ready.text


def _refuse(*args: t.Any, **kwargs: t.Any) -> t.Any:
    raise OSError("disk I/O error at /var/lib/acp/acp.sqlite3")


def test_probes_can_move_or_be_disabled(tmp_path: pathlib.Path) -> None:
    moved = build_app(tmp_path / "a", ACP_HEALTHZ_PATH="/ops/live", ACP_READYZ_PATH="/ops/ready")
    client = moved.test_client()
    assert client.get("/ops/live").json == {"status": "ok"}
    assert client.get("/ops/ready").status_code == 200
    assert client.get("/healthz").status_code == 404
    off = build_app(tmp_path / "b", ACP_HEALTH_ENABLED=False)
    assert off.test_client().get("/healthz").status_code == 404
    assert off.test_client().get("/readyz").status_code == 404
