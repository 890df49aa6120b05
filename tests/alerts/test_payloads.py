"""The generic webhook, Slack and Teams JSON bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.alerts.conftest import make_notice

from certwatch.alerts import EventKind, Notice, NoticeItem, Place
from certwatch.alerts.payloads import (
    MAX_CHAT_ITEMS,
    slack_payload,
    teams_payload,
    webhook_payload,
)
from certwatch.x509.model import Severity


def test_webhook_payload_document() -> None:
    payload = webhook_payload(make_notice(key="k-9"))

    assert payload == {
        "schema_version": 1,
        "event": "expiring",
        "key": "k-9",
        "team": "web",
        "generated_at": "2027-01-03T12:00:00Z",
        "subject": (
            "www.example.test (+1 name) expires in 7 days (2027-01-10) at 3 places"
        ),
        "items": [
            {
                "event": "expiring",
                "severity": "critical",
                "message": "The certificate expires in 7 days.",
                "finding_code": "expiring_soon",
                "names": ["www.example.test", "example.test"],
                "fingerprint": "3fa2910c" * 8,
                "not_after": "2027-01-10T12:00:00Z",
                "days_left": 7,
                "places": [
                    {
                        "kind": "endpoint",
                        "target": "www.example.test:443",
                        "address": "192.0.2.10",
                    },
                    {
                        "kind": "endpoint",
                        "target": "www.example.test:443",
                        "address": "192.0.2.11",
                    },
                    {"kind": "file", "path": "/etc/ssl/site.pem"},
                ],
                "new_fingerprint": None,
                "new_not_after": None,
                "stale_places": [],
            }
        ],
    }
    # The documented example must stay serialisable as it is.
    assert json.loads(json.dumps(payload)) == payload


def test_webhook_payload_test_event() -> None:
    notice = Notice("t-1", "web", EventKind.TEST, datetime(2027, 1, 3, tzinfo=UTC))

    payload = webhook_payload(notice)

    assert payload["event"] == "test"
    assert payload["items"] == []
    assert payload["subject"] == "certwatch test message for team web"


def test_webhook_payload_stale_places() -> None:
    item = NoticeItem(
        event=EventKind.STALE_DEPLOYMENT,
        severity=Severity.WARNING,
        names=("www.example.test",),
        places=(Place.endpoint("www.example.test:443", "192.0.2.10"),),
        stale_places=(Place.endpoint("www.example.test:443", None),),
        new_not_after=datetime(2027, 4, 10, 12, 0, 0, tzinfo=UTC),
    )
    notice = make_notice(event=EventKind.STALE_DEPLOYMENT, items=(item,))

    [payload_item] = webhook_payload(notice)["items"]

    assert payload_item["event"] == "stale_deployment"
    assert payload_item["new_not_after"] == "2027-04-10T12:00:00Z"
    assert payload_item["stale_places"] == [
        {"kind": "endpoint", "target": "www.example.test:443", "address": None}
    ]


def _texts(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        texts.extend(block.get("elements", []))
    return texts


def test_slack_payload_plain_text_only() -> None:
    item = NoticeItem(
        event=EventKind.PROBLEM,
        severity=Severity.WARNING,
        message="*.example.test is <b>not</b> _valid_",
        names=("*.example.test",),
    )
    notice = make_notice(event=EventKind.PROBLEM, items=(item,))

    payload = slack_payload(notice)

    assert payload["text"] == (
        "*.example.test: *.example.test is &lt;b&gt;not&lt;/b&gt; _valid_"
    )
    assert [block["type"] for block in payload["blocks"]] == [
        "header",
        "section",
        "context",
    ]
    texts = _texts(payload["blocks"])
    assert all(text["type"] == "plain_text" for text in texts)
    assert "Key notice-0001." in texts[-1]["text"]


def test_slack_payload_caps_items_and_lengths() -> None:
    items = tuple(
        NoticeItem(
            event=EventKind.EXPIRING,
            severity=Severity.WARNING,
            names=(f"n{n}.example.test",) + ("x" * 250,) * 20,
            days_left=n,
        )
        for n in range(MAX_CHAT_ITEMS + 5)
    )

    payload = slack_payload(make_notice(items=items))

    blocks = payload["blocks"]
    assert len(blocks) == MAX_CHAT_ITEMS + 2
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(block["text"]["text"]) <= 3000 for block in blocks[1:-1])
    assert blocks[-1]["elements"][0]["text"].startswith("5 more items not shown.")


def test_teams_payload_adaptive_card() -> None:
    payload = teams_payload(make_notice())

    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    body = card["body"]
    assert body[0]["text"].startswith("www.example.test (+1 name) expires in 7 days")
    assert body[1]["color"] == "Attention"
    facts = {fact["title"]: fact["value"] for fact in body[2]["facts"]}
    assert facts["Severity"] == "critical"
    assert facts["Places"] == (
        "www.example.test:443 at 192.0.2.10, www.example.test:443 at 192.0.2.11, "
        "/etc/ssl/site.pem"
    )
    assert body[-1]["text"] == "Team web. Key notice-0001."


def test_slack_top_level_text_escapes_markup() -> None:
    item = NoticeItem(
        event=EventKind.EXPIRING,
        severity=Severity.WARNING,
        names=("<!channel> <https://phish.example|renew now>",),
        days_left=3,
    )
    notice = Notice(
        key="slack-escape",
        team="web",
        event=EventKind.EXPIRING,
        generated_at=datetime(2027, 1, 1, tzinfo=UTC),
        items=(item,),
    )

    text = slack_payload(notice)["text"]

    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
