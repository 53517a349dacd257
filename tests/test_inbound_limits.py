"""The inbound webhook routes (``/webhooks/stripe``, ``/webhooks/<adapter>``)
face the open internet without ACP auth: they get a body limit answered before
the body is read, the HTTPS rule, and no route for an adapter that takes no
webhooks. Served over real sockets where the transport matters."""

from __future__ import annotations

import pathlib
import socket

from tests.conftest import build_app
from tests.conftest import serve_app

WHSEC = "whsec_inbound_limits_0001"


def _raw_post(base: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """POST over a plain socket: status and response bytes. A server that
    waited for a body never sent makes the read time out (the test fails)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        sock.sendall("\r\n".join(lines).encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_a_declared_body_above_the_limit_is_413_before_it_is_read(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_STRIPE_WEBHOOK_SECRET=WHSEC)
    with serve_app(app) as base:
        # 100 MB declared, 10 bytes sent: the answer comes at once, nothing waits for the rest
        status, data = _raw_post(base, "/webhooks/stripe", {
            "Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}, b'{"id": "x"')
    assert status == 413
    assert b"application/json" in data
    assert b'"code":"' in data


def test_a_body_just_over_the_configured_limit_is_413_and_under_it_is_read(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path, ACP_STRIPE_WEBHOOK_SECRET=WHSEC, ACP_MAX_WEBHOOK_BYTES=2048).test_client()
    big = client.post("/webhooks/stripe", data=b"x" * 2049, content_type="application/json")
    assert big.status_code == 413
    assert big.get_json()["type"] == "invalid_request"
    small = client.post("/webhooks/stripe", data=b"x" * 2048, content_type="application/json")
    assert small.status_code == 400  # read, and refused for its signature
    assert small.get_json()["code"] == "invalid_signature"


def test_a_chunked_body_over_the_limit_is_413(tmp_path: pathlib.Path) -> None:
    """No Content-Length (chunked): werkzeug stops reading at the limit; the
    answer is 413, not a truncated body refused for its signature."""
    app = build_app(tmp_path, ACP_STRIPE_WEBHOOK_SECRET=WHSEC, ACP_MAX_WEBHOOK_BYTES=2048)

    def chunked(size: int) -> bytes:
        return f"{size:x}\r\n".encode() + b"x" * size + b"\r\n0\r\n\r\n"

    with serve_app(app) as base:
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        over, data = _raw_post(base, "/webhooks/stripe", headers, chunked(4096))
        under, _ = _raw_post(base, "/webhooks/stripe", headers, chunked(100))
    assert over == 413, data
    assert b'"code":"' in data
    assert under == 400  # read whole, refused for its signature


def test_a_chunked_body_of_exactly_the_limit_is_read(tmp_path: pathlib.Path) -> None:
    """"At most ``ACP_MAX_WEBHOOK_BYTES``", as with a Content-Length: a chunked
    body of exactly the limit is read (and refused for its signature), one
    byte more is 413, in one chunk or several."""
    app = build_app(tmp_path, ACP_STRIPE_WEBHOOK_SECRET=WHSEC, ACP_MAX_WEBHOOK_BYTES=2048)

    def chunked(*sizes: int) -> bytes:
        return b"".join(f"{n:x}\r\n".encode() + b"x" * n + b"\r\n" for n in sizes) + b"0\r\n\r\n"

    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    with serve_app(app) as base:
        statuses = [_raw_post(base, "/webhooks/stripe", headers, body)[0]
                    for body in (chunked(2048), chunked(1000, 1048), chunked(2049), chunked(1000, 1049))]
    assert statuses == [400, 400, 413, 413]


def test_plain_http_is_refused_outside_debug_and_testing(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_STRIPE_WEBHOOK_SECRET=WHSEC)
    app.testing = False
    response = app.test_client().post("/webhooks/stripe", data=b"{}", content_type="application/json")
    assert response.status_code == 403
    assert response.get_json()["code"] == "https_required"
    secure = app.test_client().post("/webhooks/stripe", data=b"{}", content_type="application/json",
                                    base_url="https://localhost")
    assert secure.status_code == 400  # past the transport rule: refused for its signature


def test_an_adapter_that_takes_no_webhooks_has_no_route(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)  # the embedded catalog takes no webhooks
    assert not any(rule.rule == "/webhooks/catalog" for rule in app.url_map.iter_rules())
    response = app.test_client().post("/webhooks/catalog", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
