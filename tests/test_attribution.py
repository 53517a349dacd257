"""Write-only inputs of 2026-04-17 on the merchant side: ``affiliate_attribution``
(create = first touch, complete = last touch; affiliate attribution RFC) and
marketing consent (``marketing_consent_options`` offered on the session,
``marketing_consents`` decided on complete; marketing consent RFC).

They are kept with the order, never returned, never logged, and reach the
platform's order: Shopify note attributes, WooCommerce ``meta_data`` (real
fakes over sockets)."""

from __future__ import annotations

import copy
import json
import logging
import pathlib
import typing as t
import uuid

import pytest
from flask import Flask

from flask_acp.checkout import attribute
from flask_acp.models import CheckoutSession
from flask_acp.models import MarketingConsent
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.conftest import acp_headers
from tests.conftest import build_app
from tests.spec import examples
from tests.test_shopify import AppFactory
from tests.test_shopify import make_app  # noqa: F401 - fixture
from tests.test_shopify import processor  # noqa: F401 - fixture
from tests.test_shopify import purchase
from tests.test_shopify import server  # noqa: F401 - fixture
from tests.test_shopify import shop  # noqa: F401 - fixture
from tests.test_woocommerce import open_shop
from tests.test_woocommerce import seed  # noqa: F401 - fixture
from tests.test_woocommerce import woo  # noqa: F401 - fixture

#: the spec's attribution token (examples.agentic_checkout.json): a secret
TOKEN = "atp_01J8Z3WXYZ9ABC"
OPTIONS = [
    {"channel": "email", "display_text": "Promotional emails, product launches, and exclusive offers",
     "privacy_policy_url": "https://www.testshop.com/privacy"},
    {"channel": "sms", "display_text": "Order updates and exclusive deals via text message",
     "privacy_policy_url": "https://www.testshop.com/privacy"},
]
FIRST = {"provider": "impact.com", "token": TOKEN, "publisher_id": "pub_123", "touchpoint": "first"}
#: the JSONPath of the attribution in a request
AT = "$.affiliate_attribution"
LAST = {"provider": "impact.com", "token": TOKEN, "publisher_id": "pub_123", "touchpoint": "last"}


def stored(app: Flask, session_id: str) -> CheckoutSession:
    session = app.extensions["acp"].storage.sessions.get(session_id)
    assert session is not None
    return t.cast(CheckoutSession, session)


@pytest.fixture
def consent_app(tmp_path: pathlib.Path) -> Flask:
    return build_app(tmp_path, ACP_MARKETING_CONSENT_OPTIONS=OPTIONS)


def complete_body(session_id: str, **fields: t.Any) -> dict[str, t.Any]:
    return {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": f"spt_{session_id}"}}}, **fields}


# --- the spec's examples, end to end -----------------------------------------------------------------


def test_first_and_last_touch_are_kept_with_the_order_and_never_returned(consent_app: Flask) -> None:
    agent = Agent(consent_app.test_client())
    create = copy.deepcopy(examples()["create_checkout_session_request_with_first_touch_attribution"])
    create["fulfillment_details"] = {"address": ADDRESS}
    response = agent.post("/checkout_sessions", create)
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    assert stored(consent_app, session["id"]).affiliate_attributions == (FIRST,)

    complete = copy.deepcopy(examples()["complete_checkout_session_request_with_last_touch_attribution"])
    complete["payment_data"]["instrument"]["credential"]["token"] = f"spt_{session['id']}"
    complete["marketing_consents"] = [{"channel": "email", "opted_in": True}]
    done = agent.post(f"/checkout_sessions/{session['id']}/complete", complete)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed"
    kept = stored(consent_app, session["id"])
    assert kept.affiliate_attributions == (FIRST, LAST)
    assert kept.order is not None

    # write-only: in no response (nor GET) and no log line
    seen = [response.data, done.data, agent.client.get(f"/checkout_sessions/{session['id']}",
                                                       headers=agent.headers()).data]
    for body in seen:
        assert b"affiliate" not in body
        assert TOKEN.encode() not in body
        assert b"pub_123" not in body


@pytest.mark.parametrize("version", ["2025-12-12", "2026-01-16"])
def test_the_older_versions_examples_keep_it_too(consent_app: Flask, version: str) -> None:
    """2025-12-12 introduced the attribution (2026-01-16 has the same requests)."""
    agent = Agent(consent_app.test_client())
    sample = examples("2025-12-12")
    create = {**sample["create_checkout_session_request_with_first_touch_attribution"],
              "fulfillment_details": {"address": ADDRESS}}
    response = agent.post("/checkout_sessions", create, **{"API-Version": version})
    assert response.status_code == 201, response.get_json()
    sid = response.get_json()["id"]
    complete = copy.deepcopy(sample["complete_checkout_session_request_with_last_touch_attribution"])
    complete["payment_data"]["token"] = f"spt_{sid}"
    done = agent.post(f"/checkout_sessions/{sid}/complete", complete, **{"API-Version": version})
    assert done.get_json()["status"] == "completed", done.get_json()
    assert stored(consent_app, sid).affiliate_attributions == (FIRST, LAST)
    assert TOKEN.encode() not in response.data + done.data
    refused = agent.post("/checkout_sessions", {**create, "affiliate_attribution": {
        **FIRST, "sub_id": "ada@example.com"}}, **{"API-Version": version})
    assert (refused.status_code, refused.get_json()["code"]) == (400, "pii_not_allowed")


def test_attribution_never_reaches_the_order_webhook(consent_app: Flask) -> None:
    agent = Agent(consent_app.test_client())
    session = agent.ready_session()
    done = agent.post(f"/checkout_sessions/{session['id']}/complete",
                      complete_body(session["id"], affiliate_attribution=LAST))
    assert done.status_code == 200, done.get_json()
    version = consent_app.extensions["acp"].pipeline.versions["2026-04-17"]
    order = stored(consent_app, session["id"]).order
    assert order is not None
    event = json.dumps(version.render_event("order_create", order))
    assert TOKEN not in event
    assert "affiliate" not in event


def test_a_conflicting_claim_of_the_same_touchpoint_keeps_the_first() -> None:
    """RFC §4.3.1: first valid claim wins; agreeing claims may add members."""
    first = ({**FIRST},)
    assert attribute(first, {**FIRST, "publisher_id": "pub_999"}, "cs_1") == first
    assert attribute(first, {**FIRST, "provider": "other.net"}, "cs_1") == first
    assert attribute(first, {**FIRST, "sub_id": "s1", "token": "atp_new"}, "cs_1") == (
        {**FIRST, "sub_id": "s1"},)
    assert attribute(first, LAST, "cs_1") == (FIRST, LAST)
    assert attribute(first, None, "cs_1") == first


def test_a_declined_attempt_then_a_conflicting_last_touch_keeps_the_first_one(
        consent_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    agent = Agent(consent_app.test_client())
    session = agent.ready_session()
    sid = session["id"]
    declined = complete_body(sid, affiliate_attribution=LAST)
    declined["payment_data"]["instrument"]["credential"]["token"] = f"spt_decline_{sid}"
    assert agent.post(f"/checkout_sessions/{sid}/complete", declined).get_json()["status"] == \
        "ready_for_payment"
    done = agent.post(f"/checkout_sessions/{sid}/complete", complete_body(
        sid, affiliate_attribution={**LAST, "publisher_id": "pub_hijack"}))
    assert done.get_json()["status"] == "completed"
    assert stored(consent_app, sid).affiliate_attributions == (LAST,)
    # the conflict is logged for fraud analysis, without the claims' contents
    assert "conflicting last-touch affiliate attribution was ignored" in caplog.text
    assert TOKEN not in caplog.text
    assert "pub_hijack" not in caplog.text


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attribution", "code", "param"), [
    ({**FIRST, "metadata": {"user_email": "x"}}, "pii_not_allowed", f"{AT}.metadata.user_email"),
    ({**FIRST, "metadata": {"note": "ada@example.com"}}, "pii_not_allowed", f"{AT}.metadata.note"),
    ({**FIRST, "publisher_id": "ada@example.com"}, "pii_not_allowed", "$.affiliate_attribution.publisher_id"),
    ({**FIRST, "sub_id": "+1 (415) 555-0123"}, "pii_not_allowed", "$.affiliate_attribution.sub_id"),
    ({**FIRST, "campaign_id": "4155550123"}, "pii_not_allowed", "$.affiliate_attribution.campaign_id"),
    ({**FIRST, "metadata": {"Phone-Number": 1}}, "pii_not_allowed", f"{AT}.metadata['Phone-Number']"),
    ({**FIRST, "source": {"type": "url", "url": "https://x.example/?u=ada@example.com"}}, "pii_not_allowed",
     "$.affiliate_attribution.source.url"),
    ({**FIRST, "metadata": {"ref": 14155550123}}, "pii_not_allowed", f"{AT}.metadata.ref"),
    ({**FIRST, "metadata": {"firstName": "Ada"}}, "pii_not_allowed", f"{AT}.metadata.firstName"),
    ({**FIRST, "metadata": {"buyerLastName": "x"}}, "pii_not_allowed", f"{AT}.metadata.buyerLastName"),
    ({**FIRST, "source": {"type": "url", "url": "https://x.example/?u=ada%40example.com"}}, "pii_not_allowed",
     "$.affiliate_attribution.source.url"),
    ({**FIRST, "metadata": {"nested": {"a": 1}}}, "invalid_type", "$.affiliate_attribution.metadata.nested"),
    ({"token": TOKEN}, "invalid", "$.affiliate_attribution.provider"),
    ({"provider": "impact.com", "campaign_id": "c1"}, "invalid", "$.affiliate_attribution.publisher_id"),
    ({**FIRST, "touchpoint": "middle"}, "invalid", "$.affiliate_attribution.touchpoint"),
    ({**FIRST, "source": {"type": "billboard"}}, "invalid", "$.affiliate_attribution.source.type"),
])
def test_bad_attribution_is_400_at_its_jsonpath(consent_app: Flask, attribution: dict[str, t.Any], code: str,
                                                param: str) -> None:
    agent = Agent(consent_app.test_client())
    response = agent.create(affiliate_attribution=attribution)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["code"], body["param"]) == (code, param)
    assert TOKEN not in response.get_data(as_text=True)


def test_a_metadata_number_out_of_range_is_400(consent_app: Flask) -> None:
    """1e400 is valid JSON that Python reads as infinity: never stored (it
    would reach the platform order as the invalid JSON ``Infinity``)."""
    agent = Agent(consent_app.test_client())
    body = json.dumps({"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {},
                       "affiliate_attribution": {**FIRST, "metadata": {"big": 7}}})
    body = body.replace('"big": 7', '"big": 1e400')
    response = agent.client.post("/checkout_sessions", data=body,
                                 headers=acp_headers(agent.key, idempotency_key=str(uuid.uuid4())))
    assert response.status_code == 400
    assert response.get_json()["param"] == f"{AT}.metadata.big"


def test_ids_dates_and_unknown_members_are_not_pii(consent_app: Flask) -> None:
    agent = Agent(consent_app.test_client())
    claim = {**FIRST, "campaign_id": "camp_summer2026", "sub_id": "u1=abc&u2=def", "creative_id": "123456",
             "issued_at": "2026-02-11T10:00:00Z", "metadata": {"content_type": "video", "rank": 2,
                                                               "published": "2026-02-11", "sponsored": True},
             "future_member": {"kept": False}}
    response = agent.create(affiliate_attribution=claim)
    assert response.status_code == 201, response.get_json()
    kept, = stored(consent_app, response.get_json()["id"]).affiliate_attributions
    assert "future_member" not in kept  # unknown members are ignored, not stored
    assert kept["issued_at"] == "2026-02-11T10:00:00+00:00"


# --- marketing consent ---------------------------------------------------------------------------------


def test_options_are_offered_and_decisions_kept_for_offered_channels(consent_app: Flask) -> None:
    agent = Agent(consent_app.test_client())
    session = agent.ready_session()
    assert session["marketing_consent_options"] == OPTIONS
    sid = session["id"]
    done = agent.post(f"/checkout_sessions/{sid}/complete", complete_body(
        sid, buyer={"email": "ada@example.com", "phone_number": "+14155550123"},
        marketing_consents=[{"channel": "email", "opted_in": True}, {"channel": "sms", "opted_in": False},
                            {"channel": "whatsapp", "opted_in": True}]))
    assert done.status_code == 200, done.get_json()
    assert "marketing_consents" not in done.get_json()
    assert stored(consent_app, sid).marketing_consents == (
        MarketingConsent(channel="email", opted_in=True, contact="ada@example.com"),
        MarketingConsent(channel="sms", opted_in=False, contact="+14155550123"))


def test_no_options_configured_means_none_offered_and_decisions_ignored(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path)
    agent = Agent(app.test_client())
    session = agent.ready_session()
    assert "marketing_consent_options" not in session
    done = agent.post(f"/checkout_sessions/{session['id']}/complete", complete_body(
        session["id"], marketing_consents=[{"channel": "email", "opted_in": True}]))
    assert done.get_json()["status"] == "completed"
    assert stored(app, session["id"]).marketing_consents == ()


def test_options_are_a_2026_04_17_field(consent_app: Flask) -> None:
    agent = Agent(consent_app.test_client())
    response = agent.post("/checkout_sessions", {"currency": "usd", "line_items": [{"id": "item_123"}],
                                                 "capabilities": {}}, **{"API-Version": "2026-01-30"})
    assert response.status_code == 201  # validated as a 2026-01-30 CheckoutSession by the client
    assert "marketing_consent_options" not in response.get_json()


@pytest.mark.parametrize(("consents", "param"), [
    ([{"channel": "email", "opted_in": "yes"}], "$.marketing_consents[0].opted_in"),
    ([{"channel": "email"}], "$.marketing_consents[0].opted_in"),
    ([{"opted_in": True}, {"channel": "sms", "opted_in": True}], "$.marketing_consents[0].channel"),
    ([{"channel": "email", "opted_in": True}, {"channel": "email", "opted_in": False}],
     "$.marketing_consents[1].channel"),
])
def test_bad_consents_are_400(consent_app: Flask, consents: list[t.Any], param: str) -> None:
    agent = Agent(consent_app.test_client())
    session = agent.ready_session()
    response = agent.post(f"/checkout_sessions/{session['id']}/complete",
                          complete_body(session["id"], marketing_consents=consents))
    assert response.status_code == 400
    assert response.get_json()["param"] == param


# --- the platforms' orders -----------------------------------------------------------------------------


def test_woocommerce_order_meta_data_carries_them(tmp_path: pathlib.Path,
                                                  woo: FakeWooCommerce) -> None:  # noqa: F811
    opened = open_shop(tmp_path, woo, ACP_MARKETING_CONSENT_OPTIONS=OPTIONS)
    try:
        session = opened.create([{"id": "10"}], affiliate_attribution=FIRST)
        assert session["status"] == "ready_for_payment", session["messages"]
        sid = session["id"]
        done = opened.agent.post(f"/checkout_sessions/{sid}/complete", complete_body(
            sid, affiliate_attribution=LAST, marketing_consents=[{"channel": "email", "opted_in": True}]))
        assert done.get_json()["status"] == "completed", done.get_json()
        meta = {m["key"]: m["value"] for m in woo.order(int(done.get_json()["order"]["id"]))["meta_data"]}
        assert json.loads(meta["_acp_affiliate_attribution_first"]) == FIRST
        assert json.loads(meta["_acp_affiliate_attribution_last"]) == LAST
        assert json.loads(meta["_acp_marketing_consent_email"]) == {"opted_in": True,
                                                                    "contact": session["buyer"]["email"]}
    finally:
        opened.adapter.close()


def test_shopify_order_note_attributes_carry_them(make_app: AppFactory, shop: FakeShopify) -> None:  # noqa: F811
    app = make_app(ACP_MARKETING_CONSENT_OPTIONS=OPTIONS)
    agent = Agent(app.test_client())
    plain, _ = purchase(agent, shop, [{"id": "1001"}], ADDRESS)
    order, = shop.order_list()
    names = [a["key"] for a in order["customAttributes"]]
    assert not [n for n in names if n.startswith("_acp_")]  # nothing to write, nothing written

    created = agent.create([{"id": "1001"}], fulfillment_details={"address": ADDRESS},
                           buyer={"email": "ada@example.com"}, affiliate_attribution=FIRST)
    assert created.status_code == 201, created.get_json()
    sid = created.get_json()["id"]
    done = agent.post(f"/checkout_sessions/{sid}/complete", complete_body(
        sid, affiliate_attribution=LAST, marketing_consents=[{"channel": "sms", "opted_in": False}]))
    assert done.get_json()["status"] == "completed", done.get_json()
    order = next(o for o in shop.order_list() if o["id"] == done.get_json()["order"]["id"])
    attributes = {a["key"]: a["value"] for a in order["customAttributes"]}
    assert attributes["acp_checkout_session_id"] == sid  # the session link stays
    assert json.loads(attributes["_acp_affiliate_attribution_first"]) == FIRST
    assert json.loads(attributes["_acp_affiliate_attribution_last"]) == LAST
    assert json.loads(attributes["_acp_marketing_consent_sms"]) == {"opted_in": False, "contact": None}
    assert plain["status"] == "completed"
