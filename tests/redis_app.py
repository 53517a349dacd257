"""A WSGI app on a shared store for the multi-instance tests (stress, faults),
and a helper that runs it under gunicorn.

    ACP_STORE_URL=redis://... STRESS_STRIPE_URL=http://127.0.0.1:N \\
        gunicorn -w 2 -k gthread 'tests.redis_app:create_app()'

Configured from the environment, so that every instance and every worker
builds the same app on the same store:

- ``ACP_STORE_URL`` (required): the shared store; ``ACP_INSTANCE`` (required):
  the instance folder;
- ``STRESS_STRIPE_URL`` / ``STRESS_STRIPE_KEY``: the fake Stripe every
  instance charges through (charges are counted there);
- ``ACP_CATALOG_FILE`` / ``ACP_STORE_FILE``: catalog data (default ``tests/data``);
- ``ACP_LOCK_WAIT`` (seconds, default 10).
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import os
import pathlib
import subprocess
import sys
import time

import requests
from flask import Flask

from flask_acp import ACP

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).parent / "data"
AGENT_KEY = "agent-one-key-0123456789"
MERCHANT = "acct_stress"


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["ACP_INSTANCE"])
    app.config.update(
        ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY]}},
        ACP_STORE_URL=os.environ["ACP_STORE_URL"],
        ACP_REDIS_URL="",
        ACP_CATALOG_FILE=os.environ.get("ACP_CATALOG_FILE") or str(DATA / "feed.json"),
        ACP_STORE_FILE=os.environ.get("ACP_STORE_FILE") or str(DATA / "store.json"),
        ACP_ALLOW_INSECURE_LOOPBACK=True,
        ACP_FORCE_INSECURE_LOOPBACK=True,
        ACP_API_BASE_URL="https://shop.example",
        # the limits are counted (in the same Redis) but out of reach: one agent on one address
        # sends hundreds of completes a minute here
        ACP_RATE_LIMIT_PER_IP="1000000/minute", ACP_RATE_LIMIT_PER_AGENT="1000000/minute",
        ACP_RATE_LIMIT_COMPLETE_PER_AGENT="1000000/minute", ACP_RATE_LIMIT_COMPLETE_PER_SESSION="1000/minute",
        ACP_LINKS=[{"type": "terms_of_use", "url": "https://shop.example/terms"}],
        ACP_LOCK_WAIT=float(os.environ.get("ACP_LOCK_WAIT", "10")),
        ACP_STRIPE_SECRET_KEY=os.environ.get("STRESS_STRIPE_KEY", "sk_test_fake"),
        ACP_STRIPE_API_BASE=os.environ["STRESS_STRIPE_URL"],
        ACP_STRIPE_MERCHANT_ID=MERCHANT,
        ACP_STRIPE_MAX_NETWORK_RETRIES=int(os.environ.get("STRESS_STRIPE_RETRIES", "2")),
    )
    ACP(app)
    return app


class Gunicorn:
    """``gunicorn 'tests.redis_app:create_app()'`` on a loopback port.

    :param env: the app's environment (``ACP_STORE_URL``, ``STRESS_STRIPE_URL``...).
    :param workers: worker processes; :param threads: threads per worker (gthread).
    """

    def __init__(self, port: int, env: dict[str, str], *, workers: int = 2, threads: int = 8,
                 log: pathlib.Path | None = None, app: str = "tests.redis_app:create_app()") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.workers = workers
        self.threads = threads
        self.log = log
        self.app = app
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Gunicorn:
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--worker-class", "gthread",
             "--threads", str(self.threads), "--bind", f"127.0.0.1:{self.port}", "--chdir", str(ROOT),
             "--graceful-timeout", "2", "--timeout", "120", "--backlog", "512", self.app],
            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if not isinstance(out, int):
            out.close()
        deadline = time.monotonic() + timeout
        children = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}"
                                   + (f":\n{self.log.read_text()[-3000:]}" if self.log else ""))
            with contextlib.suppress(requests.RequestException):
                if (requests.get(f"{self.url}/.well-known/acp.json", timeout=2).status_code == 200
                        and (not children.exists() or len(children.read_text().split()) >= self.workers)):
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn on {self.url} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def instances(count: int, ports: cabc.Sequence[int], env: dict[str, str], **options: object
              ) -> cabc.Iterator[list[Gunicorn]]:
    """``count`` gunicorn instances of the app (started in turn, stopped together)."""
    started: list[Gunicorn] = []
    try:
        for i in range(count):
            started.append(Gunicorn(ports[i], env, **options).start())  # type: ignore[arg-type]
        yield started
    finally:
        for server in started:
            server.stop()
