"""Inbound request signatures (``Signature`` + ``Timestamp``, digest §5), per
agent policy ``off | log | strict``, over real HTTP (REST and MCP).

The README's test vectors are read from the README itself and checked here,
so they cannot drift from the code.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import logging
import pathlib
import re
import typing as t
import uuid

import pytest
import requests
from flask import Flask

from flask_acp import signing
from flask_acp.api.signatures import parse_timestamp
from flask_acp.testing import acp_headers
from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.spec import validate_response

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "acp-test-signing-secret-0123456789abcdef"
SECRET_NEW = "acp-test-signing-secret-rotated-0987654321"
#: RFC 8032 §7.1, test 1: the private key's seed and its public key
ED_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ED_PUBLIC = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#: RFC 8032 §7.1, test 2
OTHER_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
CREATE = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}}


def readme_vectors() -> list[dict[str, str]]:
    """The ``key: value`` blocks of the README's "Test vectors"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("#### Test vectors", 1)[1].split("\n#", 1)[0]
    vectors = []
    for block in re.findall(r"```text\n(.*?)```", section, re.DOTALL):
        vectors.append({k.strip(): v.strip() for k, _, v in
                        (line.partition(":") for line in block.splitlines() if ":" in line)})
    return vectors


def test_readme_vectors() -> None:
    vectors = readme_vectors()
    assert {v["algorithm"] for v in vectors} == {"hmac-sha256", "ed25519"}
    assert len(vectors) >= 4
    for v in vectors:
        body = b"" if v["body"] == "(empty)" else v["body"].encode()
        message = signing.signing_input(v["Timestamp"], v["method"], v["path"], body)
        key = v.get("secret") or v["private key (seed)"]
        assert signing.sign(v["algorithm"], key, message) == v["Signature"], v
        public = v.get("secret") or v["public key"]
        assert signing.verify(v["algorithm"], (public,), message, v["Signature"])
        assert not signing.verify(v["algorithm"], (public,), message + b" ", v["Signature"])


def now_rfc3339(offset: float = 0) -> str:
    moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Signer:
    """An agent that signs its requests (or not) over real HTTP."""

    def __init__(self, base: str, algorithm: str = "hmac-sha256", key: str | bytes = SECRET,
                 api_key: str = AGENT_KEY, prefix: str = "") -> None:
        self.base, self.algorithm, self.key, self.api_key, self.prefix = base, algorithm, key, api_key, prefix

    def headers(self, method: str, path: str, body: bytes, *, timestamp: str | None = None,
                sign: bool = True, signed_body: bytes | None = None) -> dict[str, str]:
        headers = acp_headers(self.api_key)
        if sign:
            timestamp = timestamp or now_rfc3339()
            message = signing.signing_input(timestamp, method, path,
                                            body if signed_body is None else signed_body)
            headers.update(Signature=signing.sign(self.algorithm, self.key, message), Timestamp=timestamp)
        return headers

    def send(self, method: str, path: str, payload: t.Any = None, *,
             headers: dict[str, str] | None = None, **sign: t.Any) -> requests.Response:
        path = self.prefix + path
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = headers or self.headers(method, path, body, **sign)
        response = requests.request(method, self.base + path, data=body, headers=headers, timeout=30)
        validate_response(path, response.status_code, response.json(), headers.get("API-Version"))
        return response

    def create(self, **sign: t.Any) -> requests.Response:
        return self.send("POST", "/checkout_sessions", CREATE, **sign)


def agents(policy: str, algorithm: str = "hmac-sha256",
           keys: cabc.Sequence[str] = (SECRET,)) -> dict[str, t.Any]:
    return {"agent-one": {"api_keys": [AGENT_KEY], "signature_policy": policy,
                          "signature_algorithm": algorithm, "signature_keys": list(keys)},
            "agent-two": {"api_keys": [OTHER_KEY]}}


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> cabc.Iterator[t.Callable[..., tuple[Flask, str]]]:
    servers: list[t.Any] = []

    def make(**config: t.Any) -> tuple[Flask, str]:
        app = build_app(tmp_path / f"app{len(servers)}", **config)
        server = serve_app(app)
        servers.append(server)
        return app, server.__enter__()

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def assert_refused(response: requests.Response, text: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["type"] == "invalid_request"
    assert body["code"] == "invalid_signature"
    assert text in body["message"], body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- strict ---------------------------------------------------------------------------------------


Serve = t.Callable[..., tuple[Flask, str]]


def test_strict_accepts_signed_requests_and_refuses_the_rest(serve: Serve) -> None:
    _, base = serve(ACP_AGENTS=agents("strict"))
    agent = Signer(base)
    created = agent.create()
    assert created.status_code == 201
    session_id = created.json()["id"]
    assert agent.send("GET", f"/checkout_sessions/{session_id}").status_code == 200  # empty body signed
    assert_refused(agent.create(sign=False), "send the Signature and Timestamp headers")
    other_body = json.dumps({**CREATE, "currency": "eur"}).encode()
    assert_refused(agent.create(signed_body=other_body), "does not verify")
    # the signed path is part of the signature: a signature of one session's GET does not read another
    headers = agent.headers("GET", "/checkout_sessions/cs_other", b"")
    assert_refused(agent.send("GET", f"/checkout_sessions/{session_id}", headers=headers), "does not verify")
    assert_refused(agent.create(timestamp=now_rfc3339(-301)), "behind the server's clock")
    assert_refused(agent.create(timestamp=now_rfc3339(+301)), "ahead of the server's clock")
    assert agent.create(timestamp=now_rfc3339(-290)).status_code == 201
    for bad in ("1776427200", "2026-04-17T12:00:00", "2026-04-17 12:00"):
        assert_refused(agent.create(timestamp=bad), "RFC 3339")
    assert_refused(Signer(base, key="x" * 40).create(), "does not verify")
    # another agent (policy off) needs no signature
    assert Signer(base, api_key=OTHER_KEY).create(sign=False).status_code == 201


def test_a_signature_is_accepted_once_across_processes(serve: t.Callable[..., tuple[Flask, str]],
                                                       tmp_path: pathlib.Path) -> None:
    """Replays are refused through the shared store: a second app on the same
    SQLite file (another worker process) has seen the signature too."""
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    _, base_one = serve(ACP_AGENTS=agents("strict"), ACP_STORE_URL=store)
    _, base_two = serve(ACP_AGENTS=agents("strict"), ACP_STORE_URL=store)
    agent = Signer(base_one)
    body = json.dumps(CREATE).encode()
    headers = agent.headers("POST", "/checkout_sessions", body)
    assert agent.send("POST", "/checkout_sessions", CREATE, headers=headers).status_code == 201
    assert_refused(agent.send("POST", "/checkout_sessions", CREATE, headers=headers), "used before")
    other_process = Signer(base_two).send("POST", "/checkout_sessions", CREATE, headers=headers)
    assert_refused(other_process, "used before")
    # the same signature without its base64 padding is the same signature
    padded = {**headers, "Signature": headers["Signature"] + "="}
    assert_refused(agent.send("POST", "/checkout_sessions", CREATE, headers=padded), "used before")


def test_two_keys_during_a_rotation(serve: t.Callable[..., tuple[Flask, str]]) -> None:
    _, base = serve(ACP_AGENTS=agents("strict", keys=(SECRET_NEW, SECRET)))
    assert Signer(base, key=SECRET).create().status_code == 201
    assert Signer(base, key=SECRET_NEW).create().status_code == 201
    _, after = serve(ACP_AGENTS=agents("strict", keys=(SECRET_NEW,)))
    assert_refused(Signer(after, key=SECRET).create(), "does not verify")


def test_ed25519(serve: t.Callable[..., tuple[Flask, str]]) -> None:
    _, base = serve(ACP_AGENTS=agents("strict", "ed25519", keys=(ED_PUBLIC,)), ACP_URL_PREFIX="/acp")
    agent = Signer(base, "ed25519", ED_SEED, prefix="/acp")
    assert agent.create().status_code == 201
    assert_refused(Signer(base, "ed25519", OTHER_SEED, prefix="/acp").create(), "does not verify")
    # the path signed is the one the app receives, with ACP_URL_PREFIX
    body = json.dumps(CREATE).encode()
    headers = agent.headers("POST", "/checkout_sessions", body)
    assert_refused(agent.send("POST", "/checkout_sessions", CREATE, headers=headers), "does not verify")


def test_log_policy_serves_and_warns(serve: t.Callable[..., tuple[Flask, str]],
                                     caplog: pytest.LogCaptureFixture) -> None:
    _, base = serve(ACP_AGENTS=agents("log"))
    with caplog.at_level(logging.WARNING, logger="flask_acp"):
        assert Signer(base).create(sign=False).status_code == 201
        assert Signer(base).create().status_code == 201
    warnings = [r.getMessage() for r in caplog.records if "would be refused" in r.getMessage()]
    assert warnings == ["agent agent-one: request POST /checkout_sessions would be refused: "
                        "Sign the request: send the Signature and Timestamp headers."]


def test_off_ignores_signatures(serve: t.Callable[..., tuple[Flask, str]]) -> None:
    _, base = serve(ACP_AGENTS=agents("off"))
    assert Signer(base, key="y" * 40).create().status_code == 201


def test_signed_mcp_requests(serve: t.Callable[..., tuple[Flask, str]]) -> None:
    """Over MCP the signature covers the HTTP request: POST, the endpoint's
    path and the exact JSON-RPC body; strict refuses before any JSON-RPC is read."""
    _, base = serve(ACP_AGENTS=agents("strict"), ACP_MCP_ENABLED=True)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "create_checkout_session",
        "arguments": {"meta": {"api_version": "2026-04-17", "idempotency_key": str(uuid.uuid4())},
                      "payload": CREATE}}}
    body = json.dumps(call).encode()
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    signed = {**headers, **{k: v for k, v in Signer(base).headers("POST", "/mcp", body).items()
                            if k in ("Signature", "Timestamp")}}
    answer = requests.post(base + "/mcp", data=body, headers=signed, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["result"]["structuredContent"]["status"]
    for refused in (requests.post(base + "/mcp", data=body, headers=headers, timeout=30),
                    requests.post(base + "/mcp", data=body, headers=signed, timeout=30)):  # a replay
        assert refused.status_code == 401
        error = refused.json()["error"]
        assert error["code"] == -32000
        assert error["data"]["code"] == "invalid_signature"
        validate_response("/mcp", 401, error["data"])


@pytest.mark.parametrize(("agent", "match"), [
    ({"signature_policy": "strict"}, "needs signature_keys"),
    ({"signature_policy": "strict", "signature_keys": ["short"]}, "at least 32 characters"),
    ({"signature_policy": "log", "signature_algorithm": "ed25519", "signature_keys": ["AAAA"]}, "32 bytes"),
    ({"signature_policy": "sometimes", "signature_keys": [SECRET]}, "signature_policy"),
    ({"signature_algorithm": "rsa", "signature_keys": [SECRET]}, "signature_algorithm"),
    ({"signature_keys": [SECRET, SECRET_NEW, SECRET]}, "signature_keys"),
])
def test_bad_signature_settings_stop_the_app(tmp_path: pathlib.Path, agent: dict[str, t.Any],
                                             match: str) -> None:
    with pytest.raises(RuntimeError, match=match):
        build_app(tmp_path, ACP_AGENTS={"a": {"api_keys": [AGENT_KEY], **agent}})


def test_pem_public_keys(tmp_path: pathlib.Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.from_private_bytes(ED_SEED).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    message = signing.signing_input("2026-04-17T12:00:00Z", "GET", "/checkout_sessions/cs_1", b"")
    assert signing.verify("ed25519", (pem,), message, signing.sign("ed25519", ED_SEED, message))
    build_app(tmp_path, ACP_AGENTS=agents("strict", "ed25519", keys=(pem,)))


@pytest.mark.parametrize(("text", "seconds"), [
    ("2026-04-17T12:00:00Z", 1776427200.0), ("2026-04-17t12:00:00z", 1776427200.0),
    ("2026-04-17T14:00:00+02:00", 1776427200.0), ("2026-04-17T12:00:00.123456789Z", 1776427200.123457),
])
def test_rfc3339_timestamps(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds, abs=1e-6)
