"""Races between real processes against a real multi-worker server.

The app (``tests/gunicorn_app.py``) runs under gunicorn with 4 sync workers on
127.0.0.1; every worker shares one SQLite session store and one SQLite ledger
of the fake payment processor. 8 client processes released by a barrier send
their requests at the same moment with ``requests``; every response body is
validated against the official 2026-04-17 schema.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import time
import typing as t
import urllib.parse
import uuid

import pytest
import requests

from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing import acp_headers
from tests.gunicorn_app import AGENT_KEY
from tests.spec import require_spec
from tests.spec import validate_response

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLIENTS = 8
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn needs a POSIX system")


class Server(t.NamedTuple):
    url: str
    directory: pathlib.Path

    @property
    def processor(self) -> FakePaymentProcessor:
        return FakePaymentProcessor(str(self.directory / "ledger.sqlite3"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Server]:
    require_spec()
    directory = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = {**os.environ, "ACP_TEST_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    log = (directory / "gunicorn.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "4", "--worker-class", "sync",
         "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), "--graceful-timeout", "2",
         "--timeout", "60", "tests.gunicorn_app:create_app()"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/.well-known/acp.json", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not answer within 30 s")
            time.sleep(0.1)
        # every worker must be up (each opens the SQLite files on its own)
        children = pathlib.Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while children.exists() and len(children.read_text().split()) < 4:
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not start 4 workers within 30 s")
            time.sleep(0.1)
        time.sleep(0.3)
        yield Server(url, directory)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


# --- the client processes --------------------------------------------------------------


def _post(barrier: t.Any, queue: t.Any, index: int, url: str, body: dict[str, t.Any],
          key: str) -> None:
    try:
        with requests.Session() as http:
            headers = acp_headers(AGENT_KEY, idempotency_key=key)
            barrier.wait(timeout=30)
            response = http.post(url, json=body, headers=headers, timeout=60)
            queue.put((index, response.status_code, dict(response.headers), response.json()))
    except BaseException as exc:  # report it instead of hanging the parent
        queue.put((index, -1, {}, repr(exc)))


def race(url: str, requests_: list[tuple[dict[str, t.Any], str]]) -> list[tuple[int, dict[str, str], t.Any]]:
    """POST ``(body, idempotency key)`` pairs from one process each, all at once.

    :returns: ``(status, headers, body)`` per request, in the order given.
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(requests_))
    queue = ctx.Queue()
    procs = [ctx.Process(target=_post, args=(barrier, queue, i, url, body, key))
             for i, (body, key) in enumerate(requests_)]
    for proc in procs:
        proc.start()
    results: dict[int, tuple[int, dict[str, str], t.Any]] = {}
    try:
        for _ in procs:
            index, status, headers, body = queue.get(timeout=60)
            results[index] = (status, headers, body)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    assert all(status != -1 for status, _, _ in results.values()), results
    path = urllib.parse.urlsplit(url).path
    for status, headers, body in results.values():
        assert status < 500, (status, body)
        assert headers.get("Content-Type", "").startswith("application/json")
        validate_response(path, status, body)
    return [results[i] for i in range(len(requests_))]


def post(server: Server, path: str, body: dict[str, t.Any], key: str | None = None) -> requests.Response:
    response = requests.post(server.url + path, json=body, timeout=30,
                             headers=acp_headers(AGENT_KEY, idempotency_key=key))
    validate_response(path, response.status_code, response.json())
    return response


def create_body(item: str = "item_123") -> dict[str, t.Any]:
    return {"currency": "usd", "line_items": [{"id": item}], "capabilities": {},
            "fulfillment_details": {"address": ADDRESS}}


def complete_body(token: str) -> dict[str, t.Any]:
    return {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": token}}}}


def session_count(server: Server) -> int:
    with sqlite3.connect(server.directory / "acp.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM acp_sessions").fetchone()[0])


def ready_session(server: Server) -> dict[str, t.Any]:
    response = post(server, "/checkout_sessions", create_body())
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "ready_for_payment", body["messages"]
    return t.cast(dict[str, t.Any], body)


def total_of(session: dict[str, t.Any]) -> int:
    return int(next(e["amount"] for e in session["totals"] if e["type"] == "total"))


def charges_for(server: Server, session_id: str) -> list[dict[str, t.Any]]:
    return [c for c in server.processor.charges() if session_id in c["idempotency_key"]]


# --- (a) one idempotency key, eight processes ------------------------------------------


def test_same_key_create_race_makes_one_session(server: Server) -> None:
    before = session_count(server)
    key = str(uuid.uuid4())
    results = race(server.url + "/checkout_sessions", [(create_body(), key)] * CLIENTS)
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    created = [body for status, _, body in results if status == 201]
    assert created, statuses
    assert len({body["id"] for body in created}) == 1
    for status, headers, body in results:
        if status == 409:
            assert body["code"] == "idempotency_in_flight"
            assert int(headers["Retry-After"]) >= 1
        assert headers.get("Idempotency-Key") == key
    assert sum(1 for s, h, _ in results if s == 201 and h.get("Idempotent-Replayed") != "true") == 1
    assert session_count(server) == before + 1
    # A later retry of the same request is a replay of that one session.
    again = post(server, "/checkout_sessions", create_body(), key=key)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == created[0]["id"]


def test_same_key_complete_race_charges_once(server: Server) -> None:
    session = ready_session(server)
    sid = session["id"]
    key = str(uuid.uuid4())
    results = race(f"{server.url}/checkout_sessions/{sid}/complete",
                   [(complete_body("spt_race_same_key"), key)] * CLIENTS)
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {200, 409}, statuses
    done = [body for status, _, body in results if status == 200]
    assert done, statuses
    assert all(body["status"] == "completed" for body in done)
    assert len({body["order"]["id"] for body in done}) == 1
    for status, _, body in results:
        if status == 409:
            assert body["code"] == "idempotency_in_flight"
    charges = charges_for(server, sid)
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(session) == 430


def test_different_keys_complete_race_charges_once(server: Server) -> None:
    """Eight agents' retries with their own keys and tokens: the session lock
    lets one through; the others see it busy or already completed."""
    session = ready_session(server)
    sid = session["id"]
    results = race(f"{server.url}/checkout_sessions/{sid}/complete",
                   [(complete_body(f"spt_race_{i}"), str(uuid.uuid4())) for i in range(CLIENTS)])
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 405, 409}, statuses
    done = next(body for status, _, body in results if status == 200)
    assert done["status"] == "completed"
    for status, _, body in results:
        if status == 405:
            assert body["code"] == "checkout_session_completed"
        elif status == 409:
            assert body["code"] in ("checkout_session_busy", "complete_in_progress")
    charges = charges_for(server, sid)
    assert len(charges) == 1
    assert charges[0]["amount"] == total_of(session)


# --- (b) the last unit, eight buyers ---------------------------------------------------


def test_last_unit_race_has_one_winner(server: Server) -> None:
    results = race(server.url + "/checkout_sessions",
                   [(create_body("last_unit"), str(uuid.uuid4())) for _ in range(CLIENTS)])
    assert [status for status, _, _ in results] == [201] * CLIENTS
    bodies = [body for _, _, body in results]
    assert len({body["id"] for body in bodies}) == CLIENTS
    ready = [body for body in bodies if body["status"] == "ready_for_payment"]
    assert len(ready) == 1, [b["status"] for b in bodies]
    for body in bodies:
        if body is ready[0]:
            continue
        assert body["status"] == "not_ready_for_payment"
        codes = {m.get("code") for m in body["messages"] if m["type"] == "error"}
        assert codes & {"out_of_stock", "quantity_exceeded"}, body["messages"]
        assert {m.get("param") for m in body["messages"]} & {
            "$.line_items[0].item.id", "$.line_items[0].quantity"}
    # The winner can buy it.
    winner = ready[0]
    done = post(server, f"/checkout_sessions/{winner['id']}/complete", complete_body("spt_last"))
    assert done.status_code == 200
    assert done.json()["status"] == "completed"
    assert [c["amount"] for c in charges_for(server, winner["id"])] == [total_of(winner)]
