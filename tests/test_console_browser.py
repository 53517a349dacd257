"""The merchant console in a real headless browser: Debian's Chromium driven by
Selenium through the system ``chromedriver`` (nothing is downloaded: the
driver's path is given and ``SE_OFFLINE`` keeps Selenium Manager offline).

An agent buys through the API over real HTTP; the order appears in the
console. The agent's webhook receiver is down, so the order's event ends
``failed``; the receiver comes back, a person clicks "Replay" in the console,
and the receiver gets the signed event (checked with Stripe's verifier).

Without Chromium or chromedriver the test skips, except under ``CI=true``
where it fails (``.ci/run`` installs them with apt-get).
"""

from __future__ import annotations

import collections.abc as cabc
import pathlib
import shutil
import time
import typing as t

import pytest
import requests
from flask import Flask
from werkzeug.security import generate_password_hash

from flask_acp.testing import acp_headers
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.redis_servers import need
from tests.spec import validate_response
from tests.test_webhooks import SECRET
from tests.test_webhooks import Receiver
from tests.test_webhooks import check_event

if t.TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

PASSWORD = "browser test password 42"




@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> cabc.Iterator[WebDriver]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need("selenium (pip install 'flask-acp[tests]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        need("chromium and chromedriver (apt-get install chromium chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def receiver() -> cabc.Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app(tmp_path: pathlib.Path, receiver: Receiver) -> cabc.Iterator[Flask]:
    app = build_app(
        tmp_path, SECRET_KEY="browser-test-secret-key-0123456789",
        ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY], "webhook_url": receiver.url,
                                  "webhook_secrets": [SECRET]}},
        ACP_WEBHOOK_RETRY_INTERVALS=[1], ACP_WEBHOOK_TIMEOUT=2.0,
        ACP_CONSOLE_ENABLED=True, ACP_CONSOLE_PASSWORD_HASH=generate_password_hash(PASSWORD))
    assert app.extensions["acp"].webhooks.mode == "thread"
    yield app
    app.extensions["acp"].webhooks.close()


def api(base: str, path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
    """POST ``body`` as agent-one over HTTP; the answer is validated against the spec's schema."""
    headers = acp_headers(AGENT_KEY)
    response = requests.post(base + path, json=body, headers=headers, timeout=30)
    validate_response(path, response.status_code, response.json(), headers["API-Version"])
    assert response.status_code in (200, 201), response.text
    return t.cast(dict[str, t.Any], response.json())


def wait_until(condition: t.Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_purchase_shows_in_the_console_and_a_failed_webhook_is_replayed_from_it(
        app: Flask, receiver: Receiver, browser: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    receiver.default_status = 503  # the agent's endpoint is down
    outbox = app.extensions["acp"].storage.outbox
    with serve_app(app) as base:
        session = api(base, "/checkout_sessions", {
            "currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {},
            "fulfillment_details": {"address": ADDRESS}})
        assert session["status"] == "ready_for_payment", session["messages"]
        done = api(base, f"/checkout_sessions/{session['id']}/complete", {"payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": f"spt_{session['id']}"}}}})
        assert done["status"] == "completed"
        order_id = done["order"]["id"]
        # the delivery thread tries twice (ACP_WEBHOOK_RETRY_INTERVALS=[1]) and gives up
        wait_until(lambda: len(outbox.entries(statuses=["failed"])) == 1, "the event to fail")
        (failed,) = outbox.entries(statuses=["failed"])
        assert failed.order_id == order_id
        assert failed.last_status == 503
        assert receiver.delivered == []
        assert {d.status for d in receiver.log} == {503}

        # the console asks for the password first
        browser.get(f"{base}/acp-console/orders")
        assert "/acp-console/login" in browser.current_url
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait_until(lambda: browser.current_url.endswith("/acp-console/orders"), "the orders page")

        # the order bought through the API, with its payment, in dollars from minor units
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-order="{order_id}"]')
        stored = app.extensions["acp"].storage.sessions.get(session["id"])
        total = stored.order.total
        assert row.find_element(By.CLASS_NAME, "total").text == f"{total // 100}.{total % 100:02d} USD"
        assert row.find_element(By.CLASS_NAME, "payment").text.startswith("succeeded")
        assert stored.payment.payment_id in row.text

        # the overview counts it in the funnel and the outbox
        browser.find_element(By.LINK_TEXT, "Overview").click()
        funnel = browser.find_element(By.CSS_SELECTOR, 'tr[data-agent="agent-one"]')
        assert funnel.find_element(By.CLASS_NAME, "completed").text == "1"
        failed_count = browser.find_element(By.CSS_SELECTOR,
                                            'tr[data-agent="agent-one"][data-status="failed"]')
        assert failed_count.find_element(By.CLASS_NAME, "count").text == "1"

        # the failed delivery, with its replay button
        browser.find_element(By.LINK_TEXT, "Webhook events").click()
        event_row = browser.find_element(By.CSS_SELECTOR, f'#failed-table tr[data-event="{failed.event_id}"]')
        assert order_id in event_row.text
        assert "503" in event_row.text

        receiver.default_status = 200  # the agent fixed its endpoint
        event_row.find_element(By.CSS_SELECTOR, "button.replay").click()
        wait_until(lambda: f"{failed.event_id}: pending" in browser.page_source, "the replay's notice")

        (delivery,) = receiver.wait_for(1)
        event = check_event(delivery, "order_create")  # signed: the receiver verified Merchant-Signature
        assert event["data"]["id"] == order_id
        wait_until(lambda: outbox.get(failed.event_id).status == "delivered", "the outbox to record it")
        browser.refresh()
        assert browser.find_elements(By.CSS_SELECTOR, "#failed-table") == []
        assert "No failed delivery." in browser.page_source
