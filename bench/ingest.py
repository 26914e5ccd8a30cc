"""The ingest benchmark: signed WhatsApp Cloud and Twilio SMS webhooks, 10 % redelivered.

Bodies are built and signed before the clock starts (Meta's ``X-Hub-Signature-256`` over
the raw body; Twilio's ``X-Twilio-Signature`` over the URL and the sorted form, computed by
the ``twilio`` package itself), then sent by the load generator process. The ledger is the
set of provider ids that got a 2xx: afterwards every one of them must be exactly one message.
"""

from __future__ import annotations

import json
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from bench import db
from bench.datagen import sample_texts
from bench.loadgen import request_bytes
from hilo.channels.twilio_common import inbound_sms_params
from hilo.channels.whatsapp import sign as whatsapp_signature

RETRY_SHARE = 0.10
# How far back a provider's retry reaches: recent deliveries, often still in flight.
RETRY_WINDOW = 2_000


@dataclass
class IngestChannels:
    """The WhatsApp and SMS channels the benchmark posts to, with their secrets."""

    whatsapp_id: str
    phone_number_id: str
    app_secret: str
    sms_id: str
    account_sid: str
    auth_token: str
    sms_number: str

    @property
    def ids(self) -> list[str]:
        return [self.whatsapp_id, self.sms_id]


def create_channels(client: httpx.Client) -> IngestChannels:
    """Connect a WhatsApp Cloud and a Twilio SMS channel through the API."""
    phone_number_id = str(100_000_000_000_000 + secrets.randbelow(10**14))
    app_secret = secrets.token_hex(16)
    whatsapp = client.post(
        "/api/v1/channels",
        json={
            "type": "whatsapp",
            "name": "WhatsApp (benchmark)",
            "config": {
                "phone_number_id": phone_number_id,
                "app_secret": app_secret,
                "access_token": "EAAG" + secrets.token_urlsafe(32),
                # Nothing is sent during the benchmark; a refused port if anything were.
                "api_base_url": "http://127.0.0.1:9",
            },
        },
    )
    whatsapp.raise_for_status()
    account_sid = "AC" + secrets.token_hex(16)
    auth_token = secrets.token_hex(16)
    sms_number = "+34910000" + f"{secrets.randbelow(1000):03d}"
    sms = client.post(
        "/api/v1/channels",
        json={
            "type": "sms",
            "name": "SMS (benchmark)",
            "config": {
                "account_sid": account_sid,
                "auth_token": auth_token,
                "phone_number": sms_number,
                "api_base_url": "http://127.0.0.1:9",
            },
        },
    )
    sms.raise_for_status()
    return IngestChannels(
        whatsapp_id=whatsapp.json()["id"],
        phone_number_id=phone_number_id,
        app_secret=app_secret,
        sms_id=sms.json()["id"],
        account_sid=account_sid,
        auth_token=auth_token,
        sms_number=sms_number,
    )


@dataclass
class Delivery:
    """One webhook delivery as the provider sends it (a retry repeats an earlier one)."""

    provider_id: str
    channel_type: str
    channel_id: str
    content_type: str
    signature_header: str
    signature: str
    body: bytes


@dataclass
class Deliveries:
    """The deliveries of one phase, in sending order, and which are redeliveries."""

    items: list[Delivery]
    retries: int

    def raw(self, host: str, prefix: str) -> list[bytes]:
        """Pre-built HTTP requests to ``{prefix}/{type}/{channel_id}``."""
        return [
            request_bytes(
                "POST",
                host,
                f"{prefix}/{d.channel_type}/{d.channel_id}",
                {"Content-Type": d.content_type, d.signature_header: d.signature},
                d.body,
            )
            for d in self.items
        ]


class DeliveryFactory:
    """Builds signed deliveries from existing customers, new ones and channel switchers."""

    def __init__(
        self,
        channels: IngestChannels,
        base_url: str,
        existing_phones: Sequence[str],
        *,
        seed: int,
        tag: str,
    ) -> None:
        self.channels = channels
        self.base_url = base_url.rstrip("/")
        self.existing = list(existing_phones)
        self.rng = random.Random(f"ingest:{seed}:{tag}")
        self.tag = tag
        self.texts = sample_texts(seed, 400)
        self.validator = RequestValidator(channels.auth_token)
        self.counter = 0
        # New numbers in a range the generator never uses (+347…): first-time customers.
        self.next_new = self.rng.randrange(10**6)

    def _new_phone(self) -> str:
        self.next_new += 1
        return f"+347{self.next_new % 10**8:08d}"

    def _senders(self) -> list[tuple[str, str]]:
        """(phone, channel type) for the next few messages: a burst from one customer."""
        roll = self.rng.random()
        if roll < 0.40 and self.existing:
            phone = self.rng.choice(self.existing)
            return [(phone, self.rng.choice(("whatsapp", "sms")))] * self.rng.choice((1, 1, 2))
        phone = self._new_phone()
        if roll < 0.55:  # a channel switcher: SMS first, then WhatsApp, one conversation
            return [(phone, "sms"), (phone, "whatsapp")]
        burst = self.rng.choice((1, 1, 1, 2, 3))
        return [(phone, "whatsapp" if self.rng.random() < 0.7 else "sms")] * burst

    def build(self, count: int) -> Deliveries:
        """``count`` deliveries, of which about 10 % repeat an earlier one."""
        items: list[Delivery] = []
        retries = 0
        queue: list[tuple[str, str]] = []
        while len(items) < count:
            if items and self.rng.random() < RETRY_SHARE:
                back = self.rng.randrange(max(0, len(items) - RETRY_WINDOW), len(items))
                items.append(items[back])
                retries += 1
                continue
            if not queue:
                queue = self._senders()
            phone, channel_type = queue.pop(0)
            text = self.rng.choice(self.texts)
            if channel_type == "whatsapp":
                items.append(self._whatsapp(phone, text))
            else:
                items.append(self._sms(phone, text))
        return Deliveries(items, retries)

    def _id(self) -> str:
        self.counter += 1
        return f"{self.tag}{self.counter:07d}{secrets.token_hex(4)}"

    def _whatsapp(self, phone: str, text: str) -> Delivery:
        wamid = "wamid.HBgL" + self._id()
        wa_id = phone.lstrip("+")
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "34910000000",
                                    "phone_number_id": self.channels.phone_number_id,
                                },
                                "contacts": [{"profile": {"name": "Cliente"}, "wa_id": wa_id}],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": wamid,
                                        "timestamp": str(int(time.time())),
                                        "text": {"body": text},
                                        "type": "text",
                                    }
                                ],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        # As Meta sends it: compact, non-ASCII escaped; the signature covers these bytes.
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Delivery(
            provider_id=wamid,
            channel_type="whatsapp",
            channel_id=self.channels.whatsapp_id,
            content_type="application/json",
            signature_header="X-Hub-Signature-256",
            signature=whatsapp_signature(self.channels.app_secret, body),
            body=body,
        )

    def _sms(self, phone: str, text: str) -> Delivery:
        sid = "SM" + self._id()
        params = inbound_sms_params(
            sid=sid,
            account_sid=self.channels.account_sid,
            sender=phone,
            to=self.channels.sms_number,
            text=text,
            to_country="ES",
            from_country="ES",
        )
        url = f"{self.base_url}/webhooks/sms/{self.channels.sms_id}"
        return Delivery(
            provider_id=sid,
            channel_type="sms",
            channel_id=self.channels.sms_id,
            content_type="application/x-www-form-urlencoded",
            signature_header="X-Twilio-Signature",
            signature=self.validator.compute_signature(url, params),
            body=urlencode(params).encode(),
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds."""
    return {
        "p50_ms": round(percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000, 2),
        "max_ms": round(max(seconds, default=0.0) * 1000, 2),
        "mean_ms": round(statistics.fmean(seconds) * 1000, 2) if seconds else 0.0,
    }


@dataclass
class Ledger:
    """What the load generator was told: provider ids that got a 2xx, and when first sent."""

    acked: set[str] = field(default_factory=set)
    first_sent: dict[str, float] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)

    def add(self, deliveries: Deliveries, result: dict[str, Any]) -> None:
        for delivery, sent, status in zip(
            deliveries.items, result["sent"], result["status"], strict=True
        ):
            if 200 <= status < 300:
                self.acked.add(delivery.provider_id)
            else:
                self.failures[status] = self.failures.get(status, 0) + 1
            previous = self.first_sent.get(delivery.provider_id)
            if previous is None or sent < previous:
                self.first_sent[delivery.provider_id] = sent


def phase_summary(deliveries: Deliveries, result: dict[str, Any]) -> dict[str, Any]:
    """Throughput of acknowledgements and request→acknowledgement latency of one phase."""
    sent, acked, status = result["sent"], result["acked"], result["status"]
    ok = [a - s for s, a, c in zip(sent, acked, status, strict=True) if 200 <= c < 300]
    elapsed = max(acked) - min(sent) if sent else 0.0
    return {
        "requests": len(sent),
        "redeliveries": deliveries.retries,
        "non_2xx": sum(1 for c in status if not 200 <= c < 300),
        "seconds": round(elapsed, 3),
        "acks_per_s": round(len(ok) / elapsed, 1) if elapsed else 0.0,
        "ack_latency": latency_summary(ok),
    }


def stored_counts(url: str, channel_ids: Sequence[str]) -> dict[str, int]:
    """Messages per provider id on the benchmark's channels, straight from the database."""
    marks = ", ".join("?" for _ in channel_ids)
    rows = db.fetch(
        url,
        "SELECT provider_message_id, COUNT(*) FROM messages "
        f"WHERE channel_id IN ({marks}) AND kind = 'inbound' GROUP BY provider_message_id",
        *[uuid.UUID(c) for c in channel_ids],
    )
    return {str(pid): int(n) for pid, n in rows}


def pending_jobs(url: str) -> int:
    """Inbound deliveries stored but not yet processed."""
    rows = db.fetch(url, "SELECT COUNT(*) FROM jobs WHERE name = 'inbound.process'")
    return int(rows[0][0])


def processed_times(url: str, channel_ids: Sequence[str]) -> list[float]:
    """When each delivery of the benchmark's channels was processed (Unix seconds)."""
    marks = ", ".join("?" for _ in channel_ids)
    rows = db.fetch(
        url,
        f"SELECT processed_at FROM inbound_events WHERE channel_id IN ({marks}) "
        "AND processed_at IS NOT NULL",
        *[uuid.UUID(c) for c in channel_ids],
    )
    times = []
    for (value,) in rows:
        if isinstance(value, str):
            value = db_time(value)
        times.append(value.timestamp())
    return times


def db_time(text: str) -> Any:
    """A SQLite timestamp (naive UTC text) as an aware datetime."""
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def verify(url: str, channel_ids: Sequence[str], ledger: Ledger) -> dict[str, Any]:
    """Against the ledger: every acknowledged provider id is exactly one message."""
    stored = stored_counts(url, channel_ids)
    lost = sorted(pid for pid in ledger.acked if pid not in stored)
    duplicated = sorted(pid for pid, n in stored.items() if n > 1)
    unacknowledged = sorted(pid for pid in stored if pid not in ledger.acked)
    return {
        "acknowledged_ids": len(ledger.acked),
        "stored_messages": sum(stored.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "stored_without_2xx": len(unacknowledged),
        "non_2xx_by_status": {str(k): v for k, v in sorted(ledger.failures.items())},
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5]},
        "ok": not lost and not duplicated,
    }


def host_of(base_url: str) -> str:
    return urlsplit(base_url).netloc
