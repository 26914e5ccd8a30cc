"""A synthetic contact centre at any size, written in bulk, reproducible, resumable.

One workspace of a car-rental company ("Ruta Rent a Car", the demo's company) with customers
in Spain, Mexico, Argentina and the United States writing in Spanish and English on every
registered channel: bursts of messages, long threads, people who switch channels, agents'
replies and internal notes, labels, assignment and teams.

The work is cut into chunks of contacts. A chunk's rows depend only on the seed and the
chunk's number, and each chunk is written in one transaction together with the count of
chunks done, so an interrupted run resumes where it stopped and gives the same data. Rows go
in with ``executemany`` (SQLite) or ``COPY`` (PostgreSQL), never through the API, and only
one chunk is held in memory at a time.

The rows are those the real paths write (``hilo.models``); the schema is built by the
Alembic migrations. Left out, and said so in docs/benchmarks.md: the history's event rows and
raw inbound deliveries (the reads measured do not touch them; what is ingested during a
benchmark writes both as usual).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import resource
import sqlite3
import string
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.sizes import Size
from hilo.channels.registry import ADAPTERS
from hilo.crypto import encrypt_json
from hilo.db import Base
from hilo.demo.service import (
    _CONSONANTS,
    _CURRENCY,
    _FIRST_AR,
    _FIRST_EN,
    _FIRST_ES,
    _FIRST_MX,
    _LAST_AR,
    _LAST_EN,
    _LAST_ES,
    _LAST_MX,
    _MAIL_DOMAINS,
    _MONTHS_EN,
    _MONTHS_ES,
    _OFFICES,
    _PLACES,
    _TIMEZONES,
    _UTC_OFFSET,
    TOPICS,
    WORKSPACE_NAME,
    Topic,
    _ascii,
    _money,
)
from hilo.migrate import upgrade

SLUG = "bench"
# The history ends here (fixed, so a seed always gives the same rows) and spans two years.
END = datetime(2026, 11, 1, tzinfo=UTC)
HISTORY_DAYS = 730
CHUNK_CONTACTS = 2_000
# One conversation of exactly this many messages per chunk: the long-thread read.
LONG_THREAD = 500
PROBES_PER_CHUNK = 4

TEAMS = (
    "Reservas",
    "Facturación",
    "Asistencia en carretera",
    "Flotas",
    "Calidad",
    "Clientes VIP",
)
EXTRA_LABELS = ("vip", "urgente", "seguimiento", "queja", "fidelización", "b2b")
# How customers of each market spread over the channels (weights), and how channel-specific
# sender ids look. Types missing from the registry are skipped.
_MIX = ("whatsapp", "sms", "email", "webchat", "api", "telegram", "messenger", "instagram")
CHANNEL_MIX = {
    region: dict(zip((*_MIX, "rcs", "form"), weights, strict=True))
    for region, weights in (
        ("ES", (40, 6, 12, 10, 8, 6, 8, 10, 2, 2)),
        ("MX", (55, 6, 6, 7, 5, 3, 10, 6, 1, 1)),
        ("AR", (55, 4, 8, 8, 6, 8, 6, 6, 1, 1)),
        ("US", (15, 30, 15, 12, 8, 3, 9, 6, 2, 2)),
    )
}
_REGIONS = (("ES", 45), ("MX", 25), ("AR", 12), ("US", 18))
_PHONE_PREFIX = {"ES": ("+346",), "MX": ("+5255", "+5233", "+5281"), "AR": ("+54911",)}
_US_AREAS = ("212", "305", "312", "415", "512", "617", "713", "786", "917", "954")

# What customers and agents write once the topic's script has run out (long threads).
_FOLLOW_UPS = {
    "es": (
        ("in", "¿Hay alguna novedad sobre {ref}?"),
        ("in", "Perdonen la insistencia, sigo esperando respuesta con lo de {booking}."),
        ("in", "Les adjunto la foto del {car}, matrícula {plate}."),
        ("in", "Vale, quedo a la espera."),
        ("in", "Estoy en {office}, ¿me pueden atender aquí?"),
        ("in", "¿Me confirman el importe de {amount}?"),
        ("out", "Hola {first}, seguimos con ello: el expediente {ref} está en revisión."),
        ("out", "Le escribo de nuevo por la reserva {booking}: ya está todo en orden."),
        ("out", "{first}, le confirmo {amount} para la reserva {booking}."),
        ("out", "Lo consulto con el equipo de {office} y le digo algo en breve."),
        ("note", "Llamado al cliente sin respuesta; se vuelve a intentar mañana ({ref})."),
        ("note", "Pendiente de confirmación de la oficina de {office}."),
    ),
    "en": (
        ("in", "Any news about {ref}?"),
        ("in", "Sorry to chase, still waiting to hear back about {booking}."),
        ("in", "Attaching a photo of the {car}, plate {plate}."),
        ("in", "OK, I'll wait for your reply."),
        ("in", "I'm at {office} now, can someone help me here?"),
        ("in", "Can you confirm the amount of {amount}?"),
        ("out", "Hi {first}, we're on it: case {ref} is being reviewed."),
        ("out", "Following up on booking {booking}: everything is sorted."),
        ("out", "{first}, I can confirm {amount} for booking {booking}."),
        ("out", "I'm checking with the {office} team and will get back to you shortly."),
        ("note", "Called the customer, no answer; trying again tomorrow ({ref})."),
        ("note", "Waiting for the {office} office to confirm."),
    ),
}
_SWITCHED = {
    "es": "Les sigo escribiendo por aquí, que me resulta más cómodo. ",
    "en": "Carrying on here, it's easier for me. ",
}
_FAILED = "(#131026) Message undeliverable"

COLUMNS: dict[str, tuple[str, ...]] = {
    "workspaces": (
        "id",
        "slug",
        "name",
        "default_region",
        "default_locale",
        "timezone",
        "reopen_window_days",
        "created_at",
    ),
    "users": (
        "id",
        "workspace_id",
        "email",
        "name",
        "role",
        "password_hash",
        "locale",
        "active",
        "created_at",
    ),
    "teams": ("id", "workspace_id", "name", "created_at"),
    "team_members": ("team_id", "user_id", "workspace_id"),
    "channels": (
        "id",
        "workspace_id",
        "type",
        "provider",
        "name",
        "config",
        "secrets_encrypted",
        "active",
        "created_at",
    ),
    "companies": ("id", "workspace_id", "name", "domain", "attributes", "created_at"),
    "contacts": (
        "id",
        "workspace_id",
        "name",
        "company_id",
        "locale",
        "timezone",
        "attributes",
        "merged_into_id",
        "created_at",
        "last_activity_at",
    ),
    "contact_identities": (
        "id",
        "workspace_id",
        "contact_id",
        "kind",
        "scope",
        "value",
        "verified",
        "created_at",
    ),
    "conversations": (
        "id",
        "workspace_id",
        "contact_id",
        "status",
        "priority",
        "assignee_id",
        "team_id",
        "snoozed_until",
        "last_channel_id",
        "created_at",
        "last_activity_at",
        "resolved_at",
    ),
    "conversation_labels": ("conversation_id", "label", "workspace_id"),
    "messages": (
        "id",
        "workspace_id",
        "conversation_id",
        "contact_id",
        "channel_id",
        "kind",
        "sender_type",
        "sender_id",
        "provider_message_id",
        "status",
        "error",
        "text",
        "attachments",
        "data",
        "inbound_event_id",
        "sent_at",
        "created_at",
        "updated_at",
    ),
}
# Parents first.
TABLE_ORDER = tuple(COLUMNS)

Rows = dict[str, list[tuple[Any, ...]]]


def check_columns() -> None:
    """Fail loudly when the models gained a required column the generator does not write."""
    for name, columns in COLUMNS.items():
        table = Base.metadata.tables[name]
        unknown = set(columns) - set(table.columns.keys())
        required = {
            c.name
            for c in table.columns
            if not c.nullable and c.server_default is None and c.name not in columns
        }
        if unknown or required:
            raise RuntimeError(
                f"the generator's columns for {name} are out of date: "
                f"unknown {sorted(unknown)}, missing {sorted(required)}"
            )


def uuid7(us: int, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 of the time ``us`` (microseconds since the epoch), random bits from ``rng``."""
    value = ((us // 1000) & 0xFFFF_FFFF_FFFF) << 80 | rng.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


def at(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


END_US = int(END.timestamp() * 1_000_000)
START_US = END_US - HISTORY_DAYS * 86_400_000_000
SECOND = 1_000_000


@dataclass
class Setup:
    """The workspace and what every chunk refers to: channels, agents, teams."""

    workspace_id: uuid.UUID
    channels: dict[str, uuid.UUID]
    scoped: dict[str, bool]
    kinds: dict[str, str]
    agents: list[tuple[uuid.UUID, str]]
    teams: dict[str, uuid.UUID]
    day_weights: list[float]
    rows: Rows


def _weights_by_day(rng: random.Random) -> list[float]:
    """Cumulative weights of the history's days: growth, weekends, and incident bursts."""
    cumulative, total = [], 0.0
    for day in range(HISTORY_DAYS):
        weight = 0.5 + day / HISTORY_DAYS
        weekday = (END - timedelta(days=HISTORY_DAYS - day)).weekday()
        weight *= (1.0, 1.0, 1.0, 1.0, 1.05, 0.65, 0.5)[weekday]
        if rng.random() < 0.04:  # a storm, a strike, a system outage: three times the volume
            weight *= 3.0
        total += weight
        cumulative.append(total)
    return cumulative


def make_setup(seed: int) -> Setup:
    """The workspace, its channels (one per registered type), teams and agents."""
    rng = random.Random(f"hilo-bench:{seed}:setup")
    created = START_US - 30 * 86_400 * SECOND
    workspace_id = uuid7(created, rng)
    rows: Rows = {name: [] for name in COLUMNS}
    rows["workspaces"].append(
        (workspace_id, SLUG, WORKSPACE_NAME, "ES", "es", "Europe/Madrid", None, at(created))
    )
    channels: dict[str, uuid.UUID] = {}
    scoped: dict[str, bool] = {}
    kinds: dict[str, str] = {}
    no_secrets = encrypt_json({})
    for offset, (type_, adapter) in enumerate(sorted(ADAPTERS.items())):
        channel_id = uuid7(created + offset * SECOND, rng)
        channels[type_] = channel_id
        scoped[type_] = adapter.identity_scope == "channel"
        kinds[type_] = adapter.identity_kind
        name = f"{type_.capitalize()} Ruta"
        rows["channels"].append(
            (
                channel_id,
                workspace_id,
                type_,
                adapter.providers[0],
                name,
                "{}",
                no_secrets,
                True,
                at(created),
            )
        )
    teams = {name: uuid7(created + 60 * SECOND + i, rng) for i, name in enumerate(TEAMS)}
    for name, team_id in teams.items():
        rows["teams"].append((team_id, workspace_id, name, at(created)))
    agents: list[tuple[uuid.UUID, str]] = []
    for i in range(48):
        firsts, lasts = (_FIRST_ES, _LAST_ES) if i % 4 else (_FIRST_EN, _LAST_EN)
        first = rng.choice(firsts).replace("_", " ")
        last = rng.choice(lasts)
        user_id = uuid7(created + 120 * SECOND + i, rng)
        role = "admin" if i == 0 else ("supervisor" if i < 5 else "agent")
        email = f"{_ascii(first).replace(' ', '.')}.{_ascii(last)}.{i}@rutarent.example"
        rows["users"].append(
            (
                user_id,
                workspace_id,
                email,
                f"{first} {last}",
                role,
                None,
                "en-GB" if i % 4 == 0 else "es-ES",
                True,
                at(created),
            )
        )
        if role == "agent":
            agents.append((user_id, first))
            for team in rng.sample(TEAMS, k=rng.choice((1, 1, 2))):
                rows["team_members"].append((teams[team], user_id, workspace_id))
    return Setup(
        workspace_id=workspace_id,
        channels={t: channels[t] for t in channels},
        scoped=scoped,
        kinds=kinds,
        agents=agents,
        teams=teams,
        day_weights=_weights_by_day(random.Random(f"hilo-bench:{seed}:calendar")),
        rows=rows,
    )


def _permute(index: int, modulus: int) -> int:
    """A bijection of ``range(modulus)`` (10**n): distinct contacts get distinct numbers."""
    return (index * 48_271 + 1_234_567) % modulus


def phone_for(index: int, region: str, rng: random.Random) -> str:
    """A unique E.164 mobile number for the contact numbered ``index``."""
    if region == "US":
        return f"+1{rng.choice(_US_AREAS)}{_permute(index, 10**7):07d}"
    return f"{rng.choice(_PHONE_PREFIX[region])}{_permute(index, 10**8):08d}"


class _Fill(dict[str, str]):
    """Placeholder values of one conversation; unknown placeholders get a plausible word."""

    def __missing__(self, key: str) -> str:
        return key


@dataclass
class _Person:
    index: int
    id: uuid.UUID
    name: str
    first: str
    region: str
    lang: str
    locale: str
    phone: str
    email: str | None
    channels: list[str]
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class _Conversation:
    id: uuid.UUID
    person: _Person
    topic: Topic
    start_us: int
    length: int
    channels: list[str]
    long: bool = False


class ChunkPlanner:
    """Plans the rows of one chunk of contacts, from the seed and the chunk number alone."""

    def __init__(self, setup: Setup, size: Size, seed: int) -> None:
        self.setup = setup
        self.size = size
        self.seed = seed
        self.chunks = -(-size.contacts // CHUNK_CONTACTS)
        self.topic_weights = [t.weight for t in TOPICS]
        self.types = [t for t in CHANNEL_MIX["ES"] if t in setup.channels]
        if not self.types:
            raise RuntimeError("no registered channel type the generator knows")

    def budget(self, chunk: int) -> tuple[int, int]:
        """The chunk's first contact index and its number of contacts and messages."""
        first = chunk * CHUNK_CONTACTS
        count = min(CHUNK_CONTACTS, self.size.contacts - first)
        start_messages = self.size.messages * first // self.size.contacts
        end_messages = self.size.messages * (first + count) // self.size.contacts
        return count, end_messages - start_messages

    def plan(self, chunk: int) -> tuple[Rows, list[tuple[str, str]]]:
        """Every row of the chunk, and the probes (ids and values the reads will look up)."""
        rng = random.Random(f"hilo-bench:{self.seed}:chunk:{chunk}")
        count, budget = self.budget(chunk)
        rows: Rows = {name: [] for name in COLUMNS}
        probes: list[tuple[str, str]] = []
        companies = self._companies(chunk, rng, rows)
        people = [self._person(chunk * CHUNK_CONTACTS + i, rng) for i in range(count)]
        conversations = self._conversations(people, rng)
        long_thread = budget >= 4 * LONG_THREAD and bool(conversations)
        if long_thread:
            chosen = rng.choice(conversations)
            chosen.length, chosen.long = LONG_THREAD, True
            chosen.start_us = min(chosen.start_us, END_US - 40 * 86_400 * SECOND)
            probes.append(("conversation500", str(chosen.id)))
        self._fit(conversations, budget, rng)
        first_seen: dict[uuid.UUID, int] = {}
        last_seen: dict[uuid.UUID, int] = {}
        for conversation in conversations:
            first_us, last_us = self._write_conversation(conversation, rng, rows)
            pid = conversation.person.id
            first_seen[pid] = min(first_seen.get(pid, first_us), first_us)
            last_seen[pid] = max(last_seen.get(pid, last_us), last_us)
        for person in people:
            self._write_person(person, companies, first_seen, last_seen, rng, rows)
        busy = [p for p in people if p.id in last_seen]
        for person in rng.sample(busy, k=min(PROBES_PER_CHUNK, len(busy))):
            probes += [("contact", str(person.id)), ("phone", person.phone), ("name", person.name)]
            if person.email:
                probes.append(("email", person.email))
        return rows, probes

    # -- people --

    def _companies(self, chunk: int, rng: random.Random, rows: Rows) -> list[uuid.UUID]:
        ids = []
        for j in range(CHUNK_CONTACTS // 100):
            company_id = uuid7(START_US + chunk * 1000 + j, rng)
            name = f"{rng.choice(_LAST_ES)} y {rng.choice(_LAST_ES)} S.L. ({chunk}-{j})"
            domain = f"empresa-{chunk}-{j}.example"
            rows["companies"].append(
                (company_id, self.setup.workspace_id, name, domain, "{}", at(START_US))
            )
            ids.append(company_id)
        return ids

    def _person(self, index: int, rng: random.Random) -> _Person:
        region = rng.choices([r for r, _ in _REGIONS], weights=[w for _, w in _REGIONS])[0]
        lang, locale = "es", f"es-{region}"
        if region == "ES":
            firsts, lasts = _FIRST_ES, _LAST_ES
            if rng.random() < 0.08:
                firsts, lasts, lang, locale = _FIRST_EN, _LAST_EN, "en", "en-GB"
        elif region == "MX":
            firsts, lasts = _FIRST_MX, _LAST_MX
        elif region == "AR":
            firsts, lasts = _FIRST_AR, _LAST_AR
        elif rng.random() < 0.2:
            firsts, lasts, locale = _FIRST_MX, _LAST_MX, "es-US"
        else:
            firsts, lasts, lang, locale = _FIRST_EN, _LAST_EN, "en", "en-US"
        first = rng.choice(firsts).replace("_", " ")
        last = rng.choice(lasts)
        name = f"{first} {last}"
        if lang == "es" and region != "AR" and rng.random() < 0.6:
            name += f" {rng.choice(lasts)}"
        mix = CHANNEL_MIX[region]
        weights = [mix[t] for t in self.types]
        # One in six customers switches channels: two or three of them over their history.
        how_many = 1 if rng.random() < 0.83 else rng.choice((2, 2, 3))
        channels: list[str] = []
        while len(channels) < min(how_many, len(self.types)):
            pick = rng.choices(self.types, weights=weights)[0]
            if pick not in channels:
                channels.append(pick)
        email = None
        if rng.random() < 0.7 or "email" in channels:
            local = f"{_ascii(first).replace(' ', '')}.{_ascii(last).replace(' ', '')}{index}"
            email = f"{local}@{rng.choice(_MAIL_DOMAINS[region])}"
        return _Person(
            index=index,
            id=uuid7(START_US, rng),  # replaced by the first conversation's time
            name=name,
            first=first,
            region=region,
            lang=lang,
            locale=locale,
            phone=phone_for(index, region, rng),
            email=email,
            channels=channels,
        )

    def _write_person(
        self,
        person: _Person,
        companies: list[uuid.UUID],
        first_seen: dict[uuid.UUID, int],
        last_seen: dict[uuid.UUID, int],
        rng: random.Random,
        rows: Rows,
    ) -> None:
        setup = self.setup
        fallback = START_US + rng.randrange(HISTORY_DAYS * 86_400) * SECOND
        seen_us = first_seen.get(person.id, fallback)
        company = rng.choice(companies) if companies and rng.random() < 0.1 else None
        attributes = {"tier": "gold" if rng.random() < 0.1 else "standard"}
        last = last_seen.get(person.id)
        rows["contacts"].append(
            (
                person.id,
                setup.workspace_id,
                person.name,
                company,
                person.locale,
                rng.choice(_TIMEZONES[person.region]),
                json.dumps(attributes),
                None,
                at(seen_us),
                at(last) if last is not None else None,
            )
        )
        identities: list[tuple[str, str, str, bool]] = []
        # Phones and e-mails are workspace-wide identities, verified when a signed channel
        # (the carrier, Meta, a mail server) vouched for them.
        phone_verified = email_verified = False
        for type_ in person.channels:
            kind = setup.kinds[type_]
            scope = str(setup.channels[type_]) if setup.scoped[type_] else ""
            if kind == "phone":
                phone_verified = True
                continue
            if kind == "email":
                email_verified = True
                continue
            if kind == "whatsapp":
                value = person.phone.lstrip("+")
                phone_verified = True
            else:
                value = f"{type_}-{person.index}-{rng.getrandbits(32):08x}"
            person.ids[type_] = value
            identities.append((kind, scope, value, True))
        identities.append(("phone", "", person.phone, phone_verified))
        if person.email:
            identities.append(("email", "", person.email, email_verified))
        for offset, (kind, scope, value, verified) in enumerate(identities):
            rows["contact_identities"].append(
                (
                    uuid7(seen_us + offset, rng),
                    setup.workspace_id,
                    person.id,
                    kind,
                    scope,
                    value,
                    verified,
                    at(seen_us + offset),
                )
            )

    # -- conversations --

    def _conversations(self, people: list[_Person], rng: random.Random) -> list[_Conversation]:
        weights = self.setup.day_weights
        total = weights[-1]
        result = []
        for person in people:
            how_many = rng.choices((1, 2, 3, 4, 6), weights=(55, 25, 12, 5, 3))[0]
            day = bisect.bisect_left(weights, rng.random() * total)
            start = START_US + day * 86_400 * SECOND + self._daytime(person.region, rng)
            person.id = uuid7(start - rng.randint(1, 600) * SECOND, rng)
            for k in range(how_many):
                if start >= END_US - 3600 * SECOND:
                    break
                length = rng.choices(
                    (rng.randint(2, 8), rng.randint(9, 30), rng.randint(31, 120)),
                    weights=(70, 25, 5),
                )[0]
                channels = [person.channels[k % len(person.channels)]]
                if len(person.channels) > 1 and rng.random() < 0.3:
                    channels.append(rng.choice([c for c in person.channels if c != channels[0]]))
                topic = rng.choices(TOPICS, weights=self.topic_weights)[0]
                result.append(
                    _Conversation(uuid7(start, rng), person, topic, start, length, channels)
                )
                gap_days = rng.expovariate(1 / 60)
                start += int((gap_days + 2) * 86_400 * SECOND)
                start = start - start % (86_400 * SECOND) + self._daytime(person.region, rng)
        return result

    @staticmethod
    def _daytime(region: str, rng: random.Random) -> int:
        """A moment of the customer's day, as an offset into the UTC day."""
        local_hour = rng.choices(range(24), weights=_HOUR_WEIGHTS)[0]
        utc_hour = (local_hour - _UTC_OFFSET[region]) % 24
        return (utc_hour * 3600 + rng.randrange(3600)) * SECOND

    @staticmethod
    def _fit(conversations: list[_Conversation], budget: int, rng: random.Random) -> None:
        """Scale conversation lengths so the chunk holds exactly ``budget`` messages."""
        if not conversations:
            return
        fixed = sum(c.length for c in conversations if c.long)
        free = [c for c in conversations if not c.long]
        total = sum(c.length for c in free) or 1
        factor = max(budget - fixed, len(free)) / total
        for c in free:
            c.length = max(1, round(c.length * factor))
        difference = budget - sum(c.length for c in conversations)
        while difference != 0 and free:
            c = rng.choice(free)
            if difference > 0:
                c.length += 1
                difference -= 1
            elif c.length > 1:
                c.length -= 1
                difference += 1

    def _write_conversation(
        self, conversation: _Conversation, rng: random.Random, rows: Rows
    ) -> tuple[int, int]:
        setup = self.setup
        person = conversation.person
        topic = conversation.topic
        script = rng.choice(topic.es if person.lang == "es" else topic.en)
        agent_id, agent_first = rng.choice(setup.agents)
        values = fill_values(person, topic, agent_first, conversation.start_us, rng)
        follow_ups = _FOLLOW_UPS[person.lang]
        turns = list(script[: conversation.length])
        while len(turns) < conversation.length:
            turns.append(rng.choice(follow_ups))
        # Long threads span weeks; the rest minutes to hours.
        stretch = 40 if conversation.long else (4 if conversation.length > 30 else 1)
        times = self._times([kind for kind, _ in turns], conversation.start_us, stretch, rng)
        overflow = times[-1] - (END_US - 60 * SECOND)
        if overflow > 0:
            times = [t - overflow for t in times]
        switch_at = len(turns) // 2 if len(conversation.channels) > 1 else len(turns) + 1
        channel = conversation.channels[0]
        last_inbound_channel = channel
        for position, ((kind, template), when) in enumerate(zip(turns, times, strict=True)):
            text = template.format_map(values)
            if position >= switch_at and kind == "in" and channel != conversation.channels[1]:
                # The customer carries on on another channel: the same conversation.
                channel = conversation.channels[1]
                text = _SWITCHED[person.lang] + text
            message_id = uuid7(when, rng)
            created = at(when)
            row: tuple[Any, ...]
            if kind == "in":
                last_inbound_channel = channel
                row = (
                    message_id,
                    setup.workspace_id,
                    conversation.id,
                    person.id,
                    setup.channels[channel],
                    "inbound",
                    "contact",
                    person.id,
                    f"gen-{rng.getrandbits(64):016x}",
                    "received",
                    None,
                    text,
                    "[]",
                    "{}",
                    None,
                    at(when - rng.randint(1, 4) * SECOND),
                    created,
                    created,
                )
            elif kind == "out":
                status = rng.choices(("read", "delivered", "sent", "failed"), (60, 30, 9, 1))[0]
                row = (
                    message_id,
                    setup.workspace_id,
                    conversation.id,
                    person.id,
                    setup.channels[last_inbound_channel],
                    "outbound",
                    "user",
                    agent_id,
                    f"out-{rng.getrandbits(64):016x}",
                    status,
                    _FAILED if status == "failed" else None,
                    text,
                    "[]",
                    "{}",
                    None,
                    created,
                    created,
                    created,
                )
            else:
                row = (
                    message_id,
                    setup.workspace_id,
                    conversation.id,
                    person.id,
                    None,
                    "note",
                    "user",
                    agent_id,
                    None,
                    "stored",
                    None,
                    text,
                    "[]",
                    "{}",
                    None,
                    None,
                    created,
                    created,
                )
            rows["messages"].append(row)
        self._conversation_row(conversation, times, last_inbound_channel, rng, rows)
        return times[0], times[-1]

    def _conversation_row(
        self,
        conversation: _Conversation,
        times: list[int],
        last_channel: str,
        rng: random.Random,
        rows: Rows,
    ) -> None:
        setup = self.setup
        last = times[-1]
        age_days = (END_US - last) / (86_400 * SECOND)
        if conversation.long:
            status = "open"
        elif age_days < 2:
            status = rng.choices(("open", "pending", "snoozed", "resolved"), (60, 25, 5, 10))[0]
        elif age_days < 14:
            status = rng.choices(("open", "pending", "resolved"), (6, 6, 88))[0]
        else:
            status = "open" if rng.random() < 0.003 else "resolved"
        assigned = rng.random() < (0.95 if status == "resolved" else 0.7)
        team = setup.teams.get(conversation.topic.team) or rng.choice(list(setup.teams.values()))
        snoozed = at(last + 86_400 * SECOND) if status == "snoozed" else None
        resolved = at(last + rng.randint(60, 7200) * SECOND) if status == "resolved" else None
        weighted = conversation.topic.priorities
        priority = rng.choices([p for p, _ in weighted], [w for _, w in weighted])[0]
        rows["conversations"].append(
            (
                conversation.id,
                setup.workspace_id,
                conversation.person.id,
                status,
                priority,
                rng.choice(setup.agents)[0] if assigned else None,
                team if rng.random() < 0.85 else None,
                snoozed,
                setup.channels[last_channel],
                at(times[0]),
                at(last),
                resolved,
            )
        )
        labels = set()
        if rng.random() < 0.4:
            labels.add(conversation.topic.label)
        if rng.random() < 0.1:
            labels.add(rng.choice(EXTRA_LABELS))
        for label in sorted(labels):
            rows["conversation_labels"].append((conversation.id, label, setup.workspace_id))

    @staticmethod
    def _times(kinds: list[str], start: int, stretch: int, rng: random.Random) -> list[int]:
        """Message times: customers write in bursts, agents answer in minutes, customers later."""
        times = [start]
        previous = kinds[0]
        for kind in kinds[1:]:
            if kind == "in" and previous == "in":
                gap = rng.uniform(3, 60)
            elif kind == "in":
                gap = 60 + 6 * 3600 * rng.random() ** 3 * stretch
            elif kind == "out":
                gap = 30 + 1800 * rng.random() ** 2 * stretch
            else:
                gap = rng.uniform(10, 300)
            times.append(times[-1] + int(gap * SECOND) + rng.randrange(1000))
            previous = kind
        return times


def fill_values(
    person: _Person, topic: Topic, agent: str, start_us: int, rng: random.Random
) -> _Fill:
    office_region = person.region if person.region in _OFFICES else rng.choice(("ES", "MX"))
    day = at(start_us) + timedelta(days=rng.randint(2, 20))
    months = _MONTHS_ES if person.lang == "es" else _MONTHS_EN
    date = (
        f"{day.day} de {months[day.month - 1]}"
        if person.lang == "es"
        else f"{months[day.month - 1]} {day.day}"
    )
    place_key = (office_region, person.lang)
    letters = "".join(rng.choices(_CONSONANTS, k=3))
    return _Fill(
        first=person.first,
        agent=agent,
        booking=f"R-{rng.randint(100_000, 999_999)}",
        office=rng.choice(_OFFICES[office_region]),
        date=date,
        time=rng.choice(("09:30", "12:00", "17:30", "18:00", "19:15")),
        car="coche" if person.lang == "es" else "car",
        plate=f"{rng.randint(0, 9999):04d} {letters}",
        place=rng.choice(_PLACES.get(place_key, _PLACES[("ES", "es")])),
        amount=_money(rng.randint(40, 900), _CURRENCY[office_region], person.lang),
        invoice=f"F{day.year}-{rng.randint(1, 999_999):06d}",
        ref=f"{topic.ref}-{rng.randint(100_000, 999_999)}",
        minutes=str(rng.choice((20, 30, 45))),
        card=f"{rng.randint(0, 9999):04d}",
        company="Ruta Rent a Car",
        taxid_name="NIF",
        taxid=f"B{rng.randint(10_000_000, 99_999_999)}",
        email=person.email or ("su correo" if person.lang == "es" else "your e-mail"),
        n=str(rng.randint(2, 40)),
        eta=str(rng.choice((20, 30, 45))),
        year=str(day.year),
    )


_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 11, 11, 10, 9, 9, 10, 10, 10, 9, 8, 7, 5, 3, 2)


# -- writers ----------------------------------------------------------------------------------

STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_state (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_probes (kind VARCHAR(32) NOT NULL, value TEXT NOT NULL)",
)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"
    return value


class SqliteWriter:
    """Writes chunks with executemany, one transaction each (the file stays in WAL mode)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            # The data set is regenerated from its seed if the machine dies mid-chunk.
            "PRAGMA synchronous=NORMAL",
            "PRAGMA cache_size=-262144",
            "PRAGMA temp_store=MEMORY",
        ):
            self.conn.execute(pragma)
        for ddl in STATE_DDL:
            self.conn.execute(ddl)

    def state(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM bench_state").fetchall())

    def write(self, rows: Rows, probes: list[tuple[str, str]], state: dict[str, str]) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            for table in TABLE_ORDER:
                batch = rows.get(table)
                if not batch:
                    continue
                columns = COLUMNS[table]
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})"
                )
                conn.executemany(sql, [tuple(map(_sqlite_value, row)) for row in batch])
            conn.executemany("INSERT INTO bench_probes (kind, value) VALUES (?, ?)", probes)
            conn.executemany(
                "INSERT INTO bench_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(state.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def finish(self) -> None:
        # What the planner knows (sqlite_stat1) is part of the measured setting; see the doc.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.close()


class PostgresWriter:
    """Writes chunks with COPY through asyncpg, one transaction each."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+asyncpg://", "postgresql://")
        self.loop = asyncio.new_event_loop()
        self.conn: Any = self.loop.run_until_complete(self._connect())

    async def _connect(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        for ddl in STATE_DDL:
            await conn.execute(ddl)
        return conn

    def state(self) -> dict[str, str]:
        rows = self.loop.run_until_complete(self.conn.fetch("SELECT key, value FROM bench_state"))
        return {r["key"]: r["value"] for r in rows}

    def write(self, rows: Rows, probes: list[tuple[str, str]], state: dict[str, str]) -> None:
        self.loop.run_until_complete(self._write(rows, probes, state))

    async def _write(
        self, rows: Rows, probes: list[tuple[str, str]], state: dict[str, str]
    ) -> None:
        async with self.conn.transaction():
            for table in TABLE_ORDER:
                batch = rows.get(table)
                if batch:
                    await self.conn.copy_records_to_table(
                        table, records=batch, columns=list(COLUMNS[table])
                    )
            await self.conn.copy_records_to_table(
                "bench_probes", records=probes, columns=["kind", "value"]
            )
            await self.conn.executemany(
                "INSERT INTO bench_state (key, value) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(state.items()),
            )

    def finish(self) -> None:
        # Autovacuum would vacuum and analyse the new rows within minutes; do it now so the
        # first benchmark runs neither on an empty planner's guess nor without the visibility
        # map that index-only scans need (the message search's walk is bounded by one).
        self.loop.run_until_complete(self.conn.execute("VACUUM (ANALYZE)"))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


Writer = SqliteWriter | PostgresWriter


@dataclass
class GenerateReport:
    """What a generation run did."""

    chunks: int
    resumed_from: int
    seconds: float
    peak_rss_mb: float
    messages: int
    contacts: int
    # The report of the run that finished an already complete data set.
    kept: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.seconds == 0.0 and self.messages == 0:
            return {"already_complete": True, "when_generated": self.kept}
        return {
            "chunks": self.chunks,
            "resumed_from_chunk": self.resumed_from,
            "seconds": round(self.seconds, 1),
            "generator_peak_rss_mb": round(self.peak_rss_mb, 1),
            "messages": self.messages,
            "contacts": self.contacts,
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(
    url: str,
    size: Size,
    seed: int,
    *,
    progress: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> GenerateReport:
    """Create or resume the data set at ``url`` (migrated first); returns what was done.

    ``stop_after``: write at most this many chunks, then return (tests interrupt with it).
    """
    check_columns()
    upgrade(url)
    writer: Writer = (
        SqliteWriter(url.split(":///", 1)[1]) if url.startswith("sqlite") else PostgresWriter(url)
    )
    started = time.monotonic()
    try:
        state = writer.state()
        expected = {"size": size.label, "seed": str(seed), "messages": str(size.messages)}
        if state and any(state.get(k) != v for k, v in expected.items()):
            raise SystemExit(f"{url} holds another data set: {state}")
        setup = make_setup(seed)
        planner = ChunkPlanner(setup, size, seed)
        done = int(state.get("chunks_done", "-1"))
        resumed_from = max(done, 0)
        if done < 0:
            writer.write(setup.rows, [], {**expected, "chunks_done": "0", "complete": "0"})
            done = 0
            resumed_from = 0
        elif state.get("complete") == "1":
            # Kept from the run that finished it (None: made before reports were kept).
            kept = json.loads(state.get("report", "null"))
            return GenerateReport(planner.chunks, planner.chunks, 0.0, 0.0, 0, 0, kept=kept)
        elif resumed_from > 0:
            progress(f"resuming at chunk {done + 1} of {planner.chunks}")
        messages = contacts = 0

        def report() -> GenerateReport:
            elapsed = time.monotonic() - started
            return GenerateReport(
                planner.chunks, resumed_from, elapsed, peak_rss_mb(), messages, contacts
            )

        for written, chunk in enumerate(range(done, planner.chunks)):
            if stop_after is not None and written >= stop_after:
                return report()
            rows, probes = planner.plan(chunk)
            writer.write(rows, probes, {"chunks_done": str(chunk + 1)})
            messages += len(rows["messages"])
            contacts += len(rows["contacts"])
            if chunk % 25 == 0 or chunk == planner.chunks - 1:
                elapsed = time.monotonic() - started
                progress(
                    f"chunk {chunk + 1}/{planner.chunks}: {messages:,} messages in "
                    f"{elapsed:.0f} s ({messages / max(elapsed, 1e-6):,.0f}/s), "
                    f"peak RSS {peak_rss_mb():.0f} MB"
                )
        writer.finish()
        finished = report()
        writer.write({}, [], {"complete": "1", "report": json.dumps(finished.as_dict())})
        return finished
    finally:
        writer.close()


def probes_of(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Probes grouped by kind."""
    grouped: dict[str, list[str]] = {}
    for kind, value in rows:
        grouped.setdefault(kind, []).append(value)
    return grouped


def words_of(text: str) -> Iterator[str]:
    """Lower-case words of a text (search terms for the full-text read)."""
    for raw in text.split():
        word = raw.strip(string.punctuation + "¿¡").lower()
        if len(word) > 3:
            yield word


def sample_texts(seed: int, count: int) -> list[str]:
    """Customers' messages in Spanish and English, written as the generator writes them."""
    rng = random.Random(f"hilo-bench:{seed}:texts")
    texts: list[str] = []
    while len(texts) < count:
        region = rng.choice(("ES", "MX", "AR", "US"))
        lang = "en" if region == "US" and rng.random() < 0.8 else "es"
        first = rng.choice(_FIRST_EN if lang == "en" else _FIRST_ES).replace("_", " ")
        person = _Person(0, uuid.UUID(int=0), first, first, region, lang, lang, "", None, [])
        topic = rng.choice(TOPICS)
        script = rng.choice(topic.es if lang == "es" else topic.en)
        values = fill_values(person, topic, "Ana", END_US, rng)
        lines = [t for kind, t in script + _FOLLOW_UPS[lang] if kind == "in"]
        texts.append(rng.choice(lines).format_map(values))
    return texts
