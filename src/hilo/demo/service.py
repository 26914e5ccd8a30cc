"""The demo data set: "Ruta Rent a Car", a car-rental company's support in Spanish and English.

Everything is written the way the real paths write it, but in bulk and with timestamps spread
over the last 60 days: the channels are real channel types created through
``channels.service`` (with made-up credentials, their providers pointed at a closed local
port), each customer message is the provider's own wire format (Twilio's forms, Meta's JSON,
a MIME e-mail, the web chat widget's event) read by the channel's adapter, the contact's
identities are those ``contacts.resolve_sender`` keeps, and the events are those of
``docs/events.md``. The same seed gives the same data set, relative to the hour it is
generated in.

What has no engine yet is written as its rows would be: the bot's questions and hand-off in
the car-rental story (``bot.replied``, ``bot.handoff``) and the CSAT survey
(``survey.sent``, ``survey.answered``), with the fields the catalogue reserves for them.
"""

from __future__ import annotations

import base64
import json
import quopri
import random
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.header import Header
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.auth import service as auth
from hilo.calls import service as calls
from hilo.channels import email as email_channel
from hilo.channels import service as channels
from hilo.channels import twilio_common
from hilo.channels.base import ChannelContext, InboundItem, RawRequest, Sender
from hilo.channels.email_io import addressing, mime
from hilo.channels.registry import get_adapter
from hilo.channels.webchat import ingest_body
from hilo.clock import now
from hilo.contacts.service import Claim, normalise_phone
from hilo.db import Base, Database
from hilo.events import Actor
from hilo.flows import _claims
from hilo.models import (
    Channel,
    Company,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Deal,
    Event,
    InboundEvent,
    Message,
    WebchatVisitor,
    Workspace,
)

SLUG = "demo"
WORKSPACE_NAME = "Ruta Rent a Car"
PASSWORD = "hilo-demo"  # noqa: S105  (the demo's published password)
DAYS = 60
CONTACTS = 480
# The customer of the car-rental story in PRODUCT.md: SMS breakdown, then WhatsApp.
STORY_PHONE = "+34611223344"
STORY_NAME = "Marta Jiménez Ruiz"
# A resolved conversation is reopened by a message within this many days (the default).
_REOPEN_DAYS = 7

SYSTEM = Actor.system()
BOT = Actor("bot")
# The tables the builder fills, parents first.
_WRITTEN: tuple[type[Base], ...] = (
    Company,
    Contact,
    ContactIdentity,
    Deal,
    Conversation,
    ConversationLabel,
    WebchatVisitor,
    InboundEvent,
    Message,
)


class DatabaseNotEmpty(Exception):
    """The database already holds a workspace and ``--reset`` was not given."""


@dataclass(frozen=True)
class DemoUser:
    """A user of the demo workspace, as printed for signing in."""

    email: str
    name: str
    role: str


@dataclass
class DemoResult:
    """What ``hilo demo`` prints: who can sign in, a token, and how much was written."""

    users: list[DemoUser]
    password: str
    token: str
    counts: dict[str, int]
    story_contact: str
    story_phone: str

    @property
    def admin(self) -> DemoUser:
        """The user to sign in as first."""
        return next(u for u in self.users if u.role == "admin")

    @property
    def notes(self) -> list[str]:
        """What the demo holds and what it cannot do, in English and Spanish."""
        who = f"{self.story_contact} {self.story_phone}"
        return [
            f"Story:     {who}: her car breaks down and she texts (SMS); the bot asks where "
            "she is and hands over to roadside with a summary; the agent calls her; SMS "
            "updates and a CSAT question follow; a week later she writes on WhatsApp. One "
            "conversation.",
            f"Historia:  {who}: se le avería el coche y escribe por SMS; el bot pregunta dónde "
            "está y pasa el caso a asistencia con un resumen; la agente la llama; siguen avisos "
            "por SMS y una pregunta de satisfacción; una semana después escribe por WhatsApp. "
            "Una sola conversación.",
            "           The bot's messages and the survey are demo data: Hilo has no bot "
            "engine or surveys yet. / Los mensajes del bot y la encuesta son datos de la demo: "
            "Hilo aún no tiene bot ni encuestas.",
            "Channels:  WhatsApp (Meta), SMS and phone (Twilio), e-mail, web chat and the app, "
            f"with made-up credentials: their providers are {OFFLINE_ADDRESS}, where nothing "
            "listens, so a reply you send shows as not delivered, with the connection error "
            "(`hilo demo` gives up at once; `hilo serve` retries first, as in an outage). "
            "Notes work.",
            "Canales:   WhatsApp (Meta), SMS y teléfono (Twilio), e-mail, chat web y la app, con "
            f"credenciales inventadas: sus proveedores son {OFFLINE_ADDRESS}, donde no escucha "
            "nadie, así que una respuesta que envíe aparece como no entregada, con el error de "
            "conexión (`hilo demo` desiste al momento; `hilo serve` reintenta antes, como en "
            "una caída). Las notas internas funcionan.",
        ]


def _words(text: str) -> tuple[str, ...]:
    """The words of ``text``; an underscore joins a compound name."""
    return tuple(text.split())


# --- people -----------------------------------------------------------------------------

_FIRST_ES = _words(
    "Alejandro Lucía Pablo María Daniel Sergio Laura Javier Elena Adrián Paula David Sara Jorge "
    "Cristina Hugo Nuria Raúl Irene Manuel Beatriz Iván Rocío Andrés Alba Rubén Silvia Íñigo "
    "Ainhoa Jordi Montserrat Xabier Noelia Gonzalo Claudia Óscar Patricia Carlos Marina Álvaro"
)
_LAST_ES = _words(
    "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz "
    "Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez "
    "Vázquez Ramos Gil Serrano Blanco Molina Morales Suárez Ortega Delgado Castro Ortiz Rubio "
    "Marín Sanz Iglesias Núñez Medina Garrido Cortés Santos Lozano Cano Prieto Méndez Calvo "
    "Vidal León Herrera Peña Cabrera Vega Fuentes Carrasco Aguilar Pascual Ferrer Soler Esteban"
)
_FIRST_MX = _words(
    "José_Luis Guadalupe Juan_Carlos Mariana Fernando Ximena Alejandra Luis_Ángel Fernanda "
    "Jesús Daniela Ricardo Valeria Arturo Itzel Emiliano Regina Rodrigo Paola Héctor Brenda "
    "Miguel_Ángel Karla Eduardo Citlali Santiago Renata Ernesto Yesenia Octavio"
)
_LAST_MX = _words(
    "Hernández García Martínez López González Pérez Rodríguez Sánchez Ramírez Cruz Flores Gómez "
    "Morales Vázquez Reyes Jiménez Torres Díaz Gutiérrez Mendoza Aguilar Ortiz Castillo Chávez "
    "Rivera Juárez Ramos Domínguez Herrera Medina Vargas Guzmán Velázquez Salazar Cervantes Zúñiga"
)
_FIRST_AR = _words(
    "Martín Sofía Matías Valentina Juan_Pablo Camila Facundo Agustina Nicolás Florencia Lautaro "
    "Milagros Gonzalo Julieta Tomás Micaela Joaquín Rocío Franco Luciana"
)
_LAST_AR = _words(
    "González Rodríguez Gómez Fernández López Díaz Martínez Pérez Romero Sosa Álvarez Torres "
    "Ruiz Ramírez Benítez Acosta Medina Herrera Suárez Rossi Ferraro Bianchi Romano Costa Russo "
    "Colombo Giménez Molina Castro Pereyra"
)
_FIRST_EN = _words(
    "James Emily Michael Sarah David Jessica Robert Ashley John Megan Chris Olivia Daniel Hannah "
    "Matthew Emma Andrew Lauren Ryan Rachel Kevin Amanda Brian Nicole Tyler Grace"
)
_LAST_EN = _words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Martin "
    "Jackson Thompson White Harris Clark Lewis Walker Hall Young Allen King Wright Scott Green "
    "Baker Adams Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards"
)

_MAIL_DOMAINS = {
    "ES": ("gmail.com", "hotmail.com", "outlook.es", "yahoo.es", "telefonica.net"),
    "MX": ("gmail.com", "hotmail.com", "outlook.com", "yahoo.com.mx", "prodigy.net.mx"),
    "AR": ("gmail.com", "hotmail.com", "yahoo.com.ar", "fibertel.com.ar"),
    "US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com"),
}
_TIMEZONES = {
    "ES": ("Europe/Madrid", "Atlantic/Canary"),
    "MX": ("America/Mexico_City", "America/Cancun", "America/Monterrey"),
    "AR": ("America/Argentina/Buenos_Aires", "America/Argentina/Mendoza"),
    "US": ("America/New_York", "America/Chicago", "America/Los_Angeles"),
}
_US_AREAS = ("212", "305", "312", "415", "512", "617", "713", "786", "917", "954")

# --- the company: channels, teams, users, offices ------------------------------------------

# Every provider of the demo's channels is this address on the machine itself, where nothing
# listens: a reply typed in the demo is refused there at once (a connection error on the
# message), and nothing ever goes to a real provider's host.
OFFLINE_ADDRESS = "127.0.0.1:9"
OFFLINE_URL = f"http://{OFFLINE_ADDRESS}"
# Made-up credentials: they pass each adapter's checks and open nothing anywhere.
TWILIO_ACCOUNT_SID = "AC" + "dec0de" + "0" * 26
TWILIO_AUTH_TOKEN = "demo-twilio-auth-token-not-real"  # noqa: S105
META_APP_SECRET = "demo-meta-app-secret-not-real"  # noqa: S105
META_ACCESS_TOKEN = "demo-meta-access-token-not-real"  # noqa: S105
META_VERIFY_TOKEN = "demo-meta-verify-token"  # noqa: S105
META_BUSINESS_ACCOUNT = "100000000000000"
SUPPORT_ADDRESS = "atencion@rutarent.example"
WEBSITE = "https://www.rutarent.example"


@dataclass(frozen=True)
class ChannelSpec:
    """One of the company's channels: type, provider, name, its own number and settings."""

    key: str
    type: str
    provider: str
    name: str
    number: str
    config: dict[str, Any]


def _twilio(number: str, **extra: str) -> dict[str, Any]:
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "auth_token": TWILIO_AUTH_TOKEN,
        "phone_number": number,
        "api_base_url": OFFLINE_URL,
        **extra,
    }


_WHATSAPP_TEMPLATES = [
    {
        "name": "recordatorio_recogida",
        "language": "es",
        "body": "Hola {{1}}, le recordamos que su reserva {{2}} está lista para recoger "
        "mañana en {{3}}.",
    },
    {
        "name": "pickup_reminder",
        "language": "en",
        "body": "Hi {{1}}, a reminder that booking {{2}} is ready for pick-up tomorrow at {{3}}.",
    },
    {
        "name": "seguimiento_caso",
        "language": "es",
        "body": "Hola {{1}}, le escribimos de Ruta Rent a Car sobre su caso {{2}}. Responda a "
        "este mensaje si necesita algo más.",
    },
]


def _meta(phone_number_id: str) -> dict[str, Any]:
    return {
        "phone_number_id": phone_number_id,
        "app_secret": META_APP_SECRET,
        "access_token": META_ACCESS_TOKEN,
        "verify_token": META_VERIFY_TOKEN,
        "api_base_url": OFFLINE_URL,
        "templates": _WHATSAPP_TEMPLATES,
    }


# In the order they were connected (which gives each its badge colour). Two WhatsApp numbers
# of one Meta app (Spain, and Mexico for Latin America), two SMS numbers (Spain, and the
# United States, where customers text most), the 24-hour phone line's voicemail, the support
# mailbox, the website's chat (signed-in customers and anonymous visitors) and the app.
CHANNELS = (
    ChannelSpec(
        "api", "api", "hilo", "App móvil", "", {"callback_url": f"{OFFLINE_URL}/app/replies"}
    ),
    ChannelSpec(
        "wa_es", "whatsapp", "meta", "WhatsApp España", "+34910000100", _meta("100000000000001")
    ),
    ChannelSpec(
        "wa_latam",
        "whatsapp",
        "meta",
        "WhatsApp Latinoamérica",
        "+525500000100",
        _meta("100000000000002"),
    ),
    ChannelSpec("sms_es", "sms", "twilio", "SMS España", "+34600000100", _twilio("+34600000100")),
    ChannelSpec(
        "sms_us", "sms", "twilio", "SMS Estados Unidos", "+15005550006", _twilio("+15005550006")
    ),
    ChannelSpec(
        "voice",
        "voice",
        "twilio",
        "Teléfono 24 h",
        "+34900100200",
        _twilio(
            "+34900100200",
            answer="voicemail",
            language="es-ES",
            greeting="Ruta Rent a Car, asistencia 24 horas. Deje su nombre, su número de "
            "reserva y su mensaje después de la señal, y le llamamos enseguida.",
        ),
    ),
    ChannelSpec(
        "email",
        "email",
        "smtp",
        "E-mail",
        SUPPORT_ADDRESS,
        {
            "address": SUPPORT_ADDRESS,
            "from_name": "Ruta Rent a Car",
            "default_subject": "Ruta Rent a Car: atención al cliente",
            "smtp_host": OFFLINE_ADDRESS.split(":")[0],
            "smtp_port": int(OFFLINE_ADDRESS.split(":")[1]),
            "smtp_starttls": False,
        },
    ),
    ChannelSpec(
        "webchat",
        "webchat",
        "hilo",
        "Chat web",
        "",
        {
            "allowed_origins": [WEBSITE],
            "title": "¿Le ayudamos?",
            "color": "#0b7a75",
            "locale": "auto",
            "email_fallback": True,
        },
    ),
)
# Which kind of channel a customer of each market starts on (weights). Voice is the Spanish
# roadside line's voicemail; WhatsApp dominates in Latin America, SMS in the United States.
_CHANNEL_MIX = {
    "ES": {"whatsapp": 32, "sms": 7, "voice": 9, "email": 18, "webchat": 16, "api": 18},
    "MX": {"whatsapp": 58, "sms": 3, "voice": 0, "email": 12, "webchat": 14, "api": 13},
    "AR": {"whatsapp": 60, "sms": 2, "voice": 0, "email": 13, "webchat": 15, "api": 10},
    "US": {"whatsapp": 10, "sms": 32, "voice": 0, "email": 22, "webchat": 20, "api": 16},
}
# Where a conversation may move to halfway: a text channel (never a call or an e-mail).
_SWITCHABLE = ("whatsapp", "sms", "webchat", "api")
ROADSIDE, BILLING, BOOKINGS = "Asistencia en carretera", "Facturación", "Reservas"
_TEAMS = (ROADSIDE, BILLING, BOOKINGS)
_USERS = (
    ("carmen.ruiz", "Carmen Ruiz", "admin", "es-ES", ()),
    ("javier.morales", "Javier Morales", "supervisor", "es-ES", _TEAMS),
    ("ana.beltran", "Ana Beltrán", "agent", "es-ES", (ROADSIDE,)),
    ("diego.castillo", "Diego Castillo", "agent", "es-MX", (ROADSIDE, BOOKINGS)),
    ("sofia.navarro", "Sofía Navarro", "agent", "es-ES", (BILLING,)),
    ("valentina.gomez", "Valentina Gómez", "agent", "es-AR", (BILLING, BOOKINGS)),
    ("tom.bennett", "Tom Bennett", "agent", "en-GB", (BOOKINGS, ROADSIDE)),
)
_USER_DOMAIN = "rutarent.example"

_OFFICES = {
    "ES": (
        "Málaga Aeropuerto",
        "Madrid Atocha",
        "Madrid Barajas T4",
        "Barcelona Sants",
        "Valencia Joaquín Sorolla",
        "Sevilla Santa Justa",
        "Palma Aeropuerto",
        "Bilbao Abando",
    ),
    "MX": (
        "CDMX Aeropuerto T1",
        "Cancún Aeropuerto",
        "Guadalajara Centro",
        "Monterrey Aeropuerto",
        "Oaxaca Centro",
    ),
    "AR": (
        "Buenos Aires Aeroparque",
        "Ezeiza Aeropuerto",
        "Bariloche Aeropuerto",
        "Mendoza Centro",
        "Salta Aeropuerto",
    ),
}
_PLACES = {
    ("ES", "es"): (
        "la AP-7, a la altura de Tarragona",
        "la A-4, cerca de Valdepeñas",
        "la N-340, en el km 245",
        "el aparcamiento de la playa de Burriana, en Nerja",
        "la A-8, saliendo de Bilbao",
        "la M-30, cerca del puente de Ventas",
    ),
    ("MX", "es"): (
        "la carretera federal 307, cerca de Tulum",
        "la autopista México–Puebla, en el km 92",
        "el periférico de Guadalajara, a la altura de Zapopan",
        "la carretera a Valle de Bravo",
    ),
    ("AR", "es"): (
        "la Ruta 40, cerca de Villa La Angostura",
        "la Panamericana, a la altura de Pilar",
        "la Ruta 7, saliendo de Mendoza",
        "el camino a Cafayate",
    ),
    ("ES", "en"): (
        "the AP-7 near Tarragona",
        "the A-7 near Estepona",
        "a beach car park in Nerja",
        "the ring road outside Valencia",
    ),
    ("MX", "en"): (
        "Highway 307 near Tulum",
        "the toll road to Puebla, km 92",
        "the road to Valle de Bravo",
    ),
    ("AR", "en"): ("Ruta 40 near Villa La Angostura", "the Panamericana near Pilar"),
}
_CURRENCY = {"ES": "EUR", "MX": "MXN", "AR": "ARS"}
# Rough prices relative to euros, so that amounts in texts look right in each country.
_RATE = {"EUR": Decimal(1), "MXN": Decimal(20), "ARS": Decimal(1000)}
_MONTHS_ES = _words(
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
)
_MONTHS_EN = _words("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")
_CONSONANTS = "BCDFGHJKLMNPRSTVWXYZ"

_COMPANIES = (
    ("ES", "Viajes Alhambra S.L.", "viajes-alhambra.example", "turismo"),
    ("ES", "Grupo Hotelero Mediterráneo", "hoteles-mediterraneo.example", "hostelería"),
    ("ES", "Construcciones Levante S.A.", "construcciones-levante.example", "construcción"),
    ("ES", "Eventos Atlántico S.L.", "eventos-atlantico.example", "eventos"),
    ("ES", "Bodegas Ribera Alta", "bodegas-riberaalta.example", "alimentación"),
    ("ES", "Norte Asesores Consultoría", "norte-asesores.example", "consultoría"),
    ("ES", "Farmacéutica Ibérica S.A.", "farmaiberica.example", "salud"),
    ("MX", "Logística del Bajío S.A. de C.V.", "logistica-bajio.example", "logística"),
    ("MX", "Turismo Maya Tours", "mayatours.example", "turismo"),
    ("MX", "Consultores Regiomontanos", "consultores-rg.example", "consultoría"),
    ("MX", "Farmacias del Pacífico", "farmapacifico.example", "salud"),
    ("MX", "Grupo Constructor Anáhuac", "gc-anahuac.example", "construcción"),
    ("AR", "Estancia La Pampa S.A.", "estancialapampa.example", "agro"),
    ("AR", "Software Andino S.R.L.", "softwareandino.example", "tecnología"),
    ("US", "Brightline Travel Inc.", "brightline-travel.example", "travel"),
    ("US", "Summit Events LLC", "summit-events.example", "events"),
)
_DEALS_ES = (
    "Convenio corporativo {year}",
    "Flota de furgonetas para obra ({n} vehículos)",
    "Renting de larga duración ({n} vehículos)",
    "Alquiler para el congreso anual",
    "Traslados de clientes en temporada alta",
    "Vehículos para el equipo comercial ({n})",
)
_DEAL_STAGES = ("lead", "qualified", "proposal", "negotiation", "won", "lost")

# --- what customers write about -----------------------------------------------------------

# A script is a list of turns: "in" (the customer), "out" (an agent's reply), "note" (internal).
Script = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Topic:
    """One reason to write, with scripts in Spanish and English."""

    key: str
    team: str
    label: str
    weight: int
    priorities: tuple[tuple[str, int], ...]
    eur: tuple[int, int]
    ref: str
    es: tuple[Script, ...]
    en: tuple[Script, ...]
    extra_labels: tuple[str, ...] = ()


_NORMAL = (("normal", 85), ("low", 10), ("high", 5))
_URGENT = (("urgent", 30), ("high", 55), ("normal", 15))
_HIGH = (("high", 55), ("normal", 40), ("urgent", 5))

TOPICS: tuple[Topic, ...] = (
    Topic(
        "booking",
        BOOKINGS,
        "reserva",
        26,
        _NORMAL,
        (60, 180),
        "R",
        es=(
            (
                (
                    "in",
                    "Hola, tengo la reserva {booking} para recoger el {date} en {office}. "
                    "¿Puedo cambiar la hora de recogida a la tarde?",
                ),
                ("out", "Hola {first}, soy {agent}. Claro que sí. ¿A qué hora le vendría bien?"),
                ("in", "Sobre las {time}, si puede ser."),
                (
                    "out",
                    "Hecho: la reserva {booking} queda para el {date} a las {time} en {office}, "
                    "sin coste adicional. ¡Buen viaje!",
                ),
                ("in", "Perfecto, muchas gracias 👍"),
            ),
            (
                (
                    "in",
                    "Buenas tardes. ¿Puedo alargar dos días el alquiler del {car} ({booking})? "
                    "Lo tenía que devolver el {date}.",
                ),
                (
                    "out",
                    "Buenas tardes, {first}. Le atiende {agent}. Sí, hay disponibilidad: la "
                    "ampliación de dos días son {amount} con el mismo seguro. ¿Se la confirmo?",
                ),
                ("in", "Sí, adelante."),
                ("note", "Ampliación aplicada en reservas; se cobra con la tarjeta de {booking}."),
                (
                    "out",
                    "Confirmado: la devolución pasa a dos días después del {date}, en {office}. "
                    "Le llegará la confirmación por e-mail.",
                ),
            ),
            (
                (
                    "in",
                    "Necesito cancelar la reserva {booking}, me han cambiado el vuelo. "
                    "¿Me devuelven el dinero?",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}. Siento el cambio de planes. Como cancela con más "
                    "de 48 horas de antelación, el reembolso es íntegro: {amount}. "
                    "¿La cancelo ya?",
                ),
                ("in", "Sí, por favor."),
                ("note", "Cancelación procesada; reembolso de {amount} a la tarjeta ···{card}."),
                (
                    "out",
                    "Reserva {booking} cancelada. Verá el reembolso en 5 a 7 días hábiles. "
                    "Aquí estamos para la próxima.",
                ),
                ("in", "¡Gracias!"),
            ),
            (
                (
                    "in",
                    "Hola, ¿se puede añadir un conductor adicional y una silla de bebé "
                    "a la reserva {booking}?",
                ),
                (
                    "out",
                    "¡Hola {first}! Soy {agent}. Sí, las dos cosas: suman {amount} para todo el "
                    "alquiler. ¿Las añado?",
                ),
                ("in", "Sí, añádalas. El conductor adicional es mi pareja, ¿qué necesita traer?"),
                (
                    "out",
                    "El día de la recogida, los dos carnets de conducir y el DNI o pasaporte. "
                    "Ya está todo añadido a {booking}.",
                ),
            ),
        ),
        en=(
            (
                (
                    "in",
                    "Hi, I have booking {booking} to pick up on {date} at {office}. "
                    "Can I move the pick-up to the afternoon?",
                ),
                ("out", "Hi {first}, {agent} here. Of course. What time would suit you?"),
                ("in", "Around {time} if possible."),
                (
                    "out",
                    "Done: booking {booking} is now {date} at {time}, {office}, at no extra "
                    "cost. Have a great trip!",
                ),
                ("in", "Perfect, thanks a lot!"),
            ),
            (
                (
                    "in",
                    "I need to cancel booking {booking}, my flight was changed. Do I get a refund?",
                ),
                (
                    "out",
                    "Hi {first}, this is {agent}. Sorry about the change of plans. Since it is "
                    "more than 48 hours ahead, you get a full refund of {amount}. "
                    "Shall I cancel it now?",
                ),
                ("in", "Yes please."),
                ("note", "Cancelled in the booking system; refund {amount} to card ···{card}."),
                (
                    "out",
                    "Booking {booking} is cancelled. The refund takes 5–7 business days. "
                    "Hope to see you next time!",
                ),
            ),
            (
                ("in", "Can I add a second driver and a child seat to {booking}?"),
                (
                    "out",
                    "Hi {first}, {agent} here. Yes: both together come to {amount} for the "
                    "whole rental. Shall I add them?",
                ),
                ("in", "Yes please. What does the second driver need to bring?"),
                (
                    "out",
                    "Both driving licences and a passport or ID at pick-up. "
                    "All added to {booking}.",
                ),
                ("in", "Great, thanks."),
            ),
        ),
    ),
    Topic(
        "hours",
        BOOKINGS,
        "horario",
        14,
        _NORMAL,
        (0, 0),
        "R",
        es=(
            (
                ("in", "¿A qué hora abre la oficina de {office} el domingo?"),
                (
                    "out",
                    "Hola {first}, la oficina de {office} abre los domingos de 9:00 a 21:00. "
                    "Si su vuelo llega más tarde, avísenos y le esperamos.",
                ),
                ("in", "Genial, gracias."),
            ),
            (
                (
                    "in",
                    "Buenas noches, mi vuelo llega a las 23:40. ¿Habrá alguien en el mostrador "
                    "de {office} para darme el {car}?",
                ),
                (
                    "out",
                    "Buenas noches, {first}. Soy {agent}. Sí: en el aeropuerto atendemos hasta "
                    "el último vuelo. He anotado en {booking} que llega a las 23:40.",
                ),
                ("note", "Aviso de llegada tardía enviado a la oficina de {office}."),
                ("in", "Mil gracias, así voy sin prisas."),
            ),
            (
                ("in", "Hola, ¿dónde está exactamente el mostrador de {office}? No lo encuentro."),
                (
                    "out",
                    "Hola {first}. Está en la planta 0, saliendo de llegadas a la derecha, junto "
                    "a los demás mostradores de alquiler. Si no lo ve, llámenos y le guiamos.",
                ),
                ("in", "Ya lo veo, gracias."),
            ),
        ),
        en=(
            (
                ("in", "What time does the {office} office open on Sunday?"),
                (
                    "out",
                    "Hi {first}, {office} opens on Sundays from 9:00 to 21:00. If your flight "
                    "lands later, let us know and we'll wait for you.",
                ),
                ("in", "Great, thank you."),
            ),
            (
                (
                    "in",
                    "My flight lands at 23:40. Will someone be at the {office} desk "
                    "to give me the car?",
                ),
                (
                    "out",
                    "Hi {first}, {agent} here. Yes, airport desks stay open until the last "
                    "flight. I've noted your late arrival on {booking}.",
                ),
                ("note", "Late-arrival notice sent to the {office} office."),
                ("in", "Thanks, that's a relief."),
            ),
        ),
    ),
    Topic(
        "invoice",
        BILLING,
        "factura",
        14,
        _NORMAL,
        (0, 0),
        "F",
        es=(
            (
                (
                    "in",
                    "Buenas, necesito la factura del alquiler {booking} a nombre de mi empresa.",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}, de Facturación. ¿Me indica la razón social "
                    "y el {taxid_name} de la empresa?",
                ),
                ("in", "{company}, {taxid_name} {taxid}."),
                (
                    "out",
                    "Listo: le hemos enviado la factura {invoice} a {email}. ¿Necesita algo más?",
                ),
                ("in", "Nada más, gracias."),
            ),
            (
                (
                    "in",
                    "Hola, en la factura {invoice} aparece un seguro a todo riesgo "
                    "que yo no contraté.",
                ),
                ("out", "Hola {first}, soy {agent}. Lo compruebo ahora mismo."),
                (
                    "note",
                    "En el contrato firmado en el mostrador sí figura el seguro a todo riesgo. "
                    "Enviar copia al cliente.",
                ),
                (
                    "out",
                    "He revisado el contrato de {booking}: el seguro se añadió en el mostrador "
                    "de {office} y está firmado. Le envío una copia a {email}. Si cree que no "
                    "se lo explicaron bien, dígamelo y lo escalamos.",
                ),
                ("in", "Vale, lo reviso y les digo."),
                ("in", "Ya lo he visto, es verdad que lo firmé. Gracias por la aclaración."),
            ),
        ),
        en=(
            (
                ("in", "Hello, I need an invoice for rental {booking} in my company's name."),
                (
                    "out",
                    "Hi {first}, {agent} from Billing here. Could you send me the company name "
                    "and tax ID?",
                ),
                ("in", "{company}, {taxid_name} {taxid}."),
                ("out", "Done: invoice {invoice} is on its way to {email}. Anything else?"),
                ("in", "That's all, thanks."),
            ),
        ),
    ),
    Topic(
        "dispute",
        BILLING,
        "factura",
        8,
        _HIGH,
        (45, 120),
        "F",
        extra_labels=("queja",),
        es=(
            (
                (
                    "in",
                    "Me han cobrado {amount} de combustible y devolví el {car} con el depósito "
                    "lleno. No es la primera vez que me pasa.",
                ),
                (
                    "note",
                    "Cliente molesto. Pedir a {office} el checklist de devolución de {booking}.",
                ),
                (
                    "out",
                    "Siento mucho las molestias, {first}. Soy {agent}, de Facturación. Estoy "
                    "revisando el informe de devolución y le escribo en cuanto lo tenga.",
                ),
                (
                    "out",
                    "Tiene usted razón: el informe indica depósito lleno. Hemos anulado el cargo "
                    "de {amount}; verá el abono en 3 a 5 días hábiles.",
                ),
                ("in", "Gracias por solucionarlo tan rápido."),
            ),
            (
                (
                    "in",
                    "¡Me han cargado {amount} por un arañazo que ya estaba cuando recogí el "
                    "{car}! Lo marqué en la hoja de entrega.",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}. Entiendo el enfado. ¿Nos puede enviar una foto "
                    "de la hoja de entrega donde lo marcó?",
                ),
                ("in", "Se la mando por e-mail ahora mismo."),
                ("note", "Hoja de entrega recibida: el arañazo está marcado. Anular cargo."),
                (
                    "out",
                    "Confirmado, el daño estaba anotado en la entrega. Hemos anulado el cargo "
                    "de {amount}. Disculpe las molestias.",
                ),
                ("in", "Bueno, menos mal. Gracias."),
            ),
        ),
        en=(
            (
                (
                    "in",
                    "You charged me {amount} for fuel but I returned the car with a full "
                    "tank. This is really annoying.",
                ),
                ("note", "Upset customer. Ask {office} for the return checklist of {booking}."),
                (
                    "out",
                    "I'm sorry about this, {first}. {agent} from Billing here. I'm checking the "
                    "return report and will get back to you shortly.",
                ),
                (
                    "out",
                    "You're right: the report shows a full tank. We've cancelled the {amount} "
                    "charge; the refund takes 3–5 business days.",
                ),
                ("in", "Thanks for sorting it out so quickly."),
            ),
        ),
    ),
    Topic(
        "deposit",
        BILLING,
        "fianza",
        8,
        _NORMAL,
        (300, 1200),
        "F",
        es=(
            (
                (
                    "in",
                    "¿Cuándo me devuelven la fianza de {amount}? Devolví el {car} hace una semana.",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}. La fianza se liberó al día siguiente de la "
                    "devolución; según el banco, puede tardar hasta 10 días en verse.",
                ),
                ("in", "Vale, esperaré unos días entonces."),
                ("in", "Ya me ha llegado, gracias."),
            ),
        ),
        en=(
            (
                ("in", "When will I get my {amount} deposit back? I returned the car last week."),
                (
                    "out",
                    "Hi {first}, {agent} here. The hold was released the day after the return; "
                    "depending on your bank it can take up to 10 days to show.",
                ),
                ("in", "OK, I'll wait a few more days."),
            ),
        ),
    ),
    Topic(
        "breakdown",
        ROADSIDE,
        "avería",
        13,
        _URGENT,
        (0, 0),
        "AS",
        es=(
            (
                (
                    "in",
                    "El {car} marca un testigo de avería del motor y hace un ruido raro. "
                    "Estoy en {place}.",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}, de Asistencia en carretera. Deténgase en un "
                    "lugar seguro y encienda las luces de emergencia. ¿Me confirma la matrícula?",
                ),
                ("in", "{plate}. Ya estoy parado en un área de servicio."),
                (
                    "note",
                    "Grúa solicitada al proveedor, ref. {ref}. Llegada estimada {minutes} min.",
                ),
                (
                    "out",
                    "La grúa ya va de camino (ref. {ref}) y llegará en unos {minutes} minutos. "
                    "Tiene un vehículo de sustitución preparado en {office}.",
                ),
                ("in", "Ya ha llegado la grúa. Gracias por la rapidez."),
                ("out", "Me alegro. Cualquier cosa, escríbanos por aquí. ¡Buen viaje!"),
            ),
            (
                ("in", "Tengo una rueda pinchada en {place}. ¿El {car} lleva rueda de repuesto?"),
                (
                    "out",
                    "Hola {first}, soy {agent}. Lleva un kit antipinchazos en el maletero, bajo "
                    "la alfombrilla. Si prefiere no usarlo, le enviamos asistencia sin coste.",
                ),
                ("in", "Prefiero que venga alguien, no me fío."),
                ("note", "Asistencia enviada, ref. {ref}."),
                ("out", "Hecho: la asistencia llegará en unos {minutes} minutos (ref. {ref})."),
                ("in", "Ya está cambiada la rueda. Muy amables."),
            ),
            (
                ("in", "El {car} no arranca, creo que es la batería. Estoy en {place}."),
                (
                    "out",
                    "Hola {first}, soy {agent}. ¿Se encienden las luces del salpicadero "
                    "al girar la llave?",
                ),
                ("in", "Muy poco, casi nada."),
                (
                    "out",
                    "Parece la batería. Le enviamos asistencia para arrancarlo: llegará en unos "
                    "{minutes} minutos (ref. {ref}).",
                ),
                ("in", "¡Arrancado! Gracias."),
            ),
        ),
        en=(
            (
                (
                    "in",
                    "The engine warning light is on and the car is making a strange noise. "
                    "I'm on {place}.",
                ),
                (
                    "out",
                    "Hi {first}, {agent} from Roadside Assistance. Please stop somewhere safe "
                    "and switch on your hazard lights. Can you confirm the plate number?",
                ),
                ("in", "{plate}. I'm stopped at a service area now."),
                ("note", "Tow truck requested, ref. {ref}. ETA {minutes} min."),
                (
                    "out",
                    "A tow truck is on its way (ref. {ref}), about {minutes} minutes. "
                    "A replacement car is ready for you at {office}.",
                ),
                ("in", "The tow truck is here. Thanks for the quick help!"),
            ),
            (
                ("in", "I have a flat tyre on {place}. Is there a spare in the car?"),
                (
                    "out",
                    "Hi {first}, {agent} here. There's a repair kit under the boot floor. If "
                    "you'd rather not use it, we'll send assistance at no cost.",
                ),
                ("in", "Please send someone."),
                ("out", "Done: help will be there in about {minutes} minutes (ref. {ref})."),
                ("in", "All fixed, thank you."),
            ),
        ),
    ),
    Topic(
        "damage",
        ROADSIDE,
        "daños",
        7,
        _HIGH,
        (0, 0),
        "SIN",
        es=(
            (
                (
                    "in",
                    "Me han dado un golpe en el aparcamiento y el retrovisor del {car} está roto. "
                    "¿Qué tengo que hacer?",
                ),
                (
                    "out",
                    "Hola {first}, soy {agent}. Lo primero: ¿hay algún herido? Si no, rellene "
                    "el parte amistoso con el otro conductor y envíenos fotos del parte y del "
                    "daño.",
                ),
                ("in", "No hay heridos. Ahora les mando las fotos."),
                ("in", "Les he enviado las fotos del parte y del retrovisor por e-mail."),
                ("note", "Parte recibido. Abierto expediente de daños {ref} (contrato {booking})."),
                (
                    "out",
                    "Recibido, gracias. Hemos abierto el expediente {ref}. Puede seguir usando "
                    "el {car} con normalidad; lo revisaremos en la devolución.",
                ),
            ),
        ),
        en=(
            (
                (
                    "in",
                    "Someone hit the car in a car park and the wing mirror is broken. "
                    "What should I do?",
                ),
                (
                    "out",
                    "Hi {first}, {agent} here. First: is anyone hurt? If not, please fill in "
                    "the accident report with the other driver and e-mail us photos.",
                ),
                ("in", "Nobody's hurt. I've just e-mailed the photos."),
                ("note", "Report received. Damage case {ref} opened (contract {booking})."),
                (
                    "out",
                    "Got them, thanks. Case {ref} is open. You can keep using the car; "
                    "we'll check it at return.",
                ),
            ),
        ),
    ),
    Topic(
        "lost",
        BOOKINGS,
        "objeto-perdido",
        5,
        _NORMAL,
        (0, 0),
        "R",
        es=(
            (
                (
                    "in",
                    "Creo que me dejé unas gafas de sol en el {car} que devolví ayer en {office}.",
                ),
                ("out", "Hola {first}, soy {agent}. Lo consulto con la oficina y le digo algo."),
                ("note", "Preguntado a {office} por un objeto perdido en el {plate}."),
                (
                    "out",
                    "¡Buenas noticias! Las tienen guardadas en el mostrador. Puede pasar a "
                    "recogerlas o se las enviamos por mensajería.",
                ),
                ("in", "Paso mañana a por ellas. ¡Gracias!"),
            ),
        ),
        en=(
            (
                ("in", "I think I left my sunglasses in the car I returned yesterday at {office}."),
                (
                    "out",
                    "Hi {first}, {agent} here. I'll check with the office and get back to you.",
                ),
                (
                    "out",
                    "Good news: they have them at the desk. You can pick them up or we can "
                    "courier them to you.",
                ),
                ("in", "I'll pick them up tomorrow. Thanks!"),
            ),
        ),
    ),
)
# What a customer says when they carry on the same conversation on another channel.
_SWITCH_PREFIX = {
    ("es", "whatsapp"): "Les escribo por WhatsApp, que me resulta más cómodo. ",
    ("es", "sms"): "Les escribo por SMS, que aquí casi no tengo datos. ",
    ("es", "api"): "Sigo desde la app. ",
    ("es", "webchat"): "Les escribo desde el chat de la web, ya desde el ordenador. ",
    ("en", "whatsapp"): "Switching to WhatsApp, it's easier for me. ",
    ("en", "sms"): "Texting you instead, my data is patchy here. ",
    ("en", "api"): "Carrying on in the app. ",
    ("en", "webchat"): "Writing from the chat on your website now. ",
}
# The subject of a customer's first e-mail about each topic.
_SUBJECTS = {
    "booking": ("Consulta sobre mi reserva {booking}", "Question about booking {booking}"),
    "hours": ("Horario de la oficina de {office}", "{office} opening hours"),
    "invoice": ("Factura del alquiler {booking}", "Invoice for rental {booking}"),
    "dispute": ("Cargo incorrecto en mi tarjeta ({booking})", "Wrong charge on my card"),
    "deposit": ("Devolución de la fianza", "Deposit refund"),
    "breakdown": ("Problema con el coche de alquiler", "Problem with the rental car"),
    "damage": ("Parte de daños, reserva {booking}", "Damage report, booking {booking}"),
    "lost": ("Objeto olvidado en el coche", "Item left in the car"),
}
# What a caller says around their message on the voicemail (Twilio transcribes it).
_VOICEMAIL = {
    "es": "Hola, buenas, soy {first}. {text} Llámenme a este número, por favor. Gracias.",
    "en": "Hi, this is {first}. {text} Please call me back on this number. Thanks.",
}
# A greeting a written message opens with, which the voicemail's own greeting replaces.
_GREETING = re.compile(
    r"^(hola|buenas(?: tardes| noches)?|buenos días|hello|hi)\b[,.!]?\s*", re.IGNORECASE
)
# How a reply quotes the e-mail it answers, as mail clients write it.
_QUOTE_HEADER = {
    "es": "El {date}, Ruta Rent a Car <{address}> escribió:",
    "en": "On {date}, Ruta Rent a Car <{address}> wrote:",
}
# Hours from UTC, roughly, to keep customers writing in their daytime.
_UTC_OFFSET = {"ES": 1, "MX": -6, "AR": -3, "US": -5}


# --- the builder ------------------------------------------------------------------------


@dataclass
class _Channel:
    key: str
    type: str
    name: str
    number: str
    row: Channel
    context: ChannelContext
    url: str
    carries_text: bool

    @property
    def id(self) -> uuid.UUID:
        return self.row.id


@dataclass
class _Agent:
    id: uuid.UUID
    name: str
    role: str
    locale: str
    teams: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.name.split()[0]

    @property
    def actor(self) -> Actor:
        return Actor("user", str(self.id))


@dataclass
class _Company:
    id: uuid.UUID
    region: str
    name: str
    domain: str
    tax_id: str
    contacts: list[_Person] = field(default_factory=list)


@dataclass
class _Person:
    name: str
    first: str
    region: str
    lang: str
    locale: str
    timezone: str
    phone: str
    email: str | None
    app_id: str
    company: _Company | None
    attributes: dict[str, Any]
    # Their WhatsApp and SMS channels (by market), their browser's web chat visitor, and the
    # id the website signs for them when they chat signed in (None: they chat anonymously).
    wa: str = "wa_es"
    sms: str = "sms_es"
    visitor: uuid.UUID = field(default_factory=lambda: uuid.UUID(int=0))
    web_user: str | None = None
    id: uuid.UUID | None = None
    created_at: datetime | None = None
    last_activity_at: datetime | None = None
    # The kind of channel they last wrote on: one that surely reaches their contact.
    last_key: str | None = None
    visitor_seen: datetime | None = None

    @property
    def cid(self) -> uuid.UUID:
        assert self.id is not None, "contact not created yet"
        return self.id


@dataclass
class _Known:
    """An identity written so far, and whose it is."""

    person: _Person
    row: dict[str, Any]


@dataclass
class _Conv:
    id: uuid.UUID
    person: _Person
    created_at: datetime
    last_activity_at: datetime
    last_channel: _Channel
    status: str = "open"
    priority: str = "normal"
    assignee: _Agent | None = None
    team: uuid.UUID | None = None
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    # The text channel an agent answers a phone call on (the caller's SMS).
    text_channel: _Channel | None = None
    # The e-mail thread: its subject, the Message-IDs so far, and our last reply (to quote).
    subject: str = ""
    email_refs: list[str] = field(default_factory=list)
    last_email: tuple[str, str, datetime] | None = None


@dataclass
class _Step:
    """One thing that happens in a conversation, at a time."""

    # in, out, bot, survey, note, bot_note, call, handoff, team, assign, priority, label, status
    at: datetime
    kind: str
    text: str = ""
    # A customer's message: the kind of channel (None: where the conversation is), whether it
    # moves the conversation there, and the subject should it be an e-mail.
    key: str | None = None
    switch: bool = False
    subject: str = ""
    # A reply: the channel it goes on (None: the conversation's).
    via: str | None = None
    agent: _Agent | None = None
    actor: Actor = SYSTEM
    value: str = ""
    reason: str | None = None
    until: datetime | None = None
    delivered: bool = True
    # A web chat reply the visitor never saw (they had left): it follows by e-mail.
    unseen: bool = False
    # A logged call: direction, outcome, duration in seconds.
    call: tuple[str, str, int] | None = None
    score: int | None = None


@dataclass(frozen=True)
class _Draft:
    """A customer's message about to be written in its provider's format."""

    channel: _Channel
    person: _Person
    conv: _Conv | None
    text: str
    sent: datetime
    subject: str


@dataclass
class _Planned:
    at: datetime
    order: int
    type: str
    actor: Actor
    ids: dict[str, uuid.UUID | None]
    data: dict[str, Any]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _money(eur: int, currency: str, lang: str) -> str:
    value = Decimal(eur) * _RATE[currency]
    if currency == "EUR":
        if lang == "en":
            return f"€{value:,.2f}"
        return f"{value:,.2f} €".replace(",", "_").replace(".", ",").replace("_", ".")
    if currency == "MXN":
        return f"${value:,.0f} MXN" if lang == "es" else f"MXN {value:,.0f}"
    return f"$ {value:,.0f}".replace(",", ".") if lang == "es" else f"ARS {value:,.0f}"


def _wa_id(phone: str) -> str:
    """The WhatsApp id of a phone: its digits; Mexican mobiles keep WhatsApp's old ``521``."""
    digits = phone.lstrip("+")
    return "521" + digits[2:] if digits.startswith("52") else digits


def _segments(text: str) -> int:
    """How many SMS segments a carrier cuts a text into (UCS-2 once it leaves GSM's set)."""
    per = 153 if all(ord(c) < 128 or c in "áéíóúñÁÉÍÓÚÑüÜ¿¡€" for c in text) else 67
    return 1 if len(text) <= (160 if per == 153 else 70) else -(-len(text) // per)


def _header(value: str) -> str:
    """A header value in ASCII: RFC 2047 words where it is not."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def _form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


def _json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class _Builder:
    """Collects the rows and events of the demo, then writes them in bulk."""

    def __init__(self, session: AsyncSession, seed: int) -> None:
        self.session = session
        self.rng = random.Random(seed)
        # Ids draw from their own stream so that content does not shift when ids change.
        self.id_rng = random.Random(seed ^ 0x5EED)
        # Anchored on the hour: the same seed gives the same data all through that hour.
        self.now = now().replace(minute=0, second=0, microsecond=0)
        self.window_start = self.now - timedelta(days=DAYS)
        self.setup_at = self.window_start - timedelta(days=2)
        self.workspace_id = uuid.UUID(int=0)
        self.workspace: Workspace | None = None
        self.channels: dict[str, _Channel] = {}
        self.teams: dict[str, uuid.UUID] = {}
        self.agents: list[_Agent] = []
        self.companies: list[_Company] = []
        self.people: list[_Person] = []
        self.rows: dict[type[Base], list[dict[str, Any]]] = {model: [] for model in _WRITTEN}
        self.planned: list[_Planned] = []
        self.used_phones: set[str] = {STORY_PHONE}
        self.used_emails: set[str] = set()
        # Every identity written so far, as contacts.resolve_sender would find it.
        self.index: dict[tuple[str, str, str], _Known] = {}
        self.visitors: dict[uuid.UUID, dict[str, Any]] = {}
        # The bot's summary note of each conversation it handed over.
        self.summaries: dict[uuid.UUID, uuid.UUID] = {}
        self.counter = 0

    # -- ids, events, small helpers --

    def uuid_at(self, when: datetime) -> uuid.UUID:
        """A UUIDv7 of ``when``, so that ids sort like the times they stand for."""
        ms = int(when.timestamp() * 1000)
        value = (ms & 0xFFFF_FFFF_FFFF) << 80 | self.id_rng.getrandbits(80)
        value = (value & ~(0xF << 76)) | (0x7 << 76)
        value = (value & ~(0x3 << 62)) | (0x2 << 62)
        return uuid.UUID(int=value)

    def hex(self, digits: int) -> str:
        """Random hex digits, from the id stream."""
        return f"{self.id_rng.getrandbits(4 * digits):0{digits}x}"

    def event(
        self,
        at: datetime,
        type: str,
        actor: Actor,
        *,
        channel: _Channel | None = None,
        conv: _Conv | None = None,
        contact_id: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Plan an event; they are recorded in time order at the end."""
        self.counter += 1
        self.planned.append(
            _Planned(
                at=at,
                order=self.counter,
                type=type,
                actor=actor,
                ids={
                    "channel_id": channel.id if channel else None,
                    "conversation_id": conv.id if conv else None,
                    "contact_id": contact_id or (conv.person.cid if conv else None),
                    "message_id": message_id,
                },
                data=data or {},
            )
        )

    def weighted(self, options: dict[str, int] | tuple[tuple[str, int], ...]) -> str:
        """One key, chosen with the given weights."""
        pairs = list(options.items()) if isinstance(options, dict) else list(options)
        return self.rng.choices([k for k, _ in pairs], weights=[w for _, w in pairs])[0]

    def minutes(self, low: float, high: float) -> timedelta:
        """A random duration, skewed towards ``low`` like real response times."""
        return timedelta(minutes=low + (high - low) * self.rng.random() ** 2)

    def seconds(self, low: float, high: float) -> timedelta:
        return timedelta(seconds=self.rng.uniform(low, high))

    # -- the company --

    async def setup(self) -> None:
        """Workspace, users, teams and channels, through the services that own them."""
        session = self.session
        workspace = await auth.do_get_or_create_workspace(session, SLUG)
        workspace.name = WORKSPACE_NAME
        workspace.default_region, workspace.default_locale = "ES", "es"
        workspace.timezone = "Europe/Madrid"
        workspace.created_at = self.setup_at
        self.workspace, self.workspace_id = workspace, workspace.id
        cli = Actor("cli")
        for local, name, role, locale, teams in _USERS:
            user = await auth.do_create_user(
                session,
                workspace_id=workspace.id,
                email=f"{local}@{_USER_DOMAIN}",
                role=role,
                password=PASSWORD,
                name=name,
                actor=cli,
            )
            user.locale, user.created_at = locale, self.setup_at
            self.agents.append(_Agent(user.id, name, role, locale, teams))
        admin = self.agents[0].actor
        for team_name in _TEAMS:
            team = await auth.do_create_team(
                session, workspace_id=workspace.id, name=team_name, actor=admin
            )
            team.created_at = self.setup_at
            self.teams[team_name] = team.id
        for agent in self.agents:
            for team_name in agent.teams:
                await auth.do_add_member(
                    session,
                    workspace_id=workspace.id,
                    team_id=self.teams[team_name],
                    user_id=agent.id,
                    actor=admin,
                )
        for spec in CHANNELS:
            config = dict(spec.config)
            if spec.type == "webchat":
                # Replies a visitor did not stay to read go out from the support mailbox.
                config["email_channel_id"] = str(self.channels["email"].id)
            row, _secrets = await channels.do_create(
                session,
                workspace_id=workspace.id,
                type=spec.type,
                name=spec.name,
                provider=spec.provider,
                config=config,
                actor=admin,
            )
            row.created_at = self.setup_at
            self.channels[spec.key] = _Channel(
                key=spec.key,
                type=spec.type,
                name=spec.name,
                number=spec.number,
                row=row,
                context=channels.context(row),
                url=channels.webhook_url(row),
                carries_text=channels.carries_text(row),
            )
        await session.flush()
        # The services stamp their events "now"; the story starts before the 60 days.
        pending = [o for o in (*session.identity_map.values(), *session.new)]
        setup_events = sorted((o for o in pending if isinstance(o, Event)), key=lambda e: e.id or 0)
        for i, setup_event in enumerate(setup_events):
            setup_event.created_at = self.setup_at + timedelta(seconds=i)

    def agent(self, team: str, lang: str) -> _Agent:
        """An agent of the team, preferring one who speaks the customer's language."""
        members = [a for a in self.agents if a.role == "agent" and team in a.teams]
        if lang == "en":
            english = [a for a in members if a.locale.startswith("en")]
            if english and self.rng.random() < 0.6:
                return self.rng.choice(english)
        return self.rng.choice(members)

    @property
    def supervisor(self) -> _Agent:
        return next(a for a in self.agents if a.role == "supervisor")

    # -- CRM --

    def make_companies(self) -> None:
        """Companies of every market, and deals for the Spanish and Mexican ones."""
        admin = self.agents[0]
        for i, (region, name, domain, industry) in enumerate(_COMPANIES):
            created = self.window_start + timedelta(hours=2, minutes=i)
            tax_id = self.tax_id(region)
            company = _Company(self.uuid_at(created), region, name, domain, tax_id)
            self.companies.append(company)
            self.rows[Company].append(
                {
                    "id": company.id,
                    "workspace_id": self.workspace_id,
                    "name": name,
                    "domain": domain,
                    "attributes": {"country": region, "industry": industry, "tax_id": tax_id},
                    "created_at": created,
                }
            )
            self.event(
                created, "company.created", admin.actor, data={"company_id": str(company.id)}
            )

    def make_deals(self) -> None:
        """Sales opportunities, in euros or pesos, some tied to a contact."""
        rng = self.rng
        for company in self.companies:
            currency = {"ES": "EUR", "MX": "MXN"}.get(company.region)
            if currency is None:
                continue
            for _ in range(rng.randint(1, 3)):
                created = self.window_start + timedelta(days=rng.uniform(0, DAYS - 1))
                known = [p for p in company.contacts if p.created_at is not None]
                contact = rng.choice(known) if known and rng.random() < 0.7 else None
                if contact is not None and contact.created_at is not None:
                    room = (self.now - contact.created_at).total_seconds()
                    created = contact.created_at + timedelta(seconds=room * rng.random())
                eur = rng.randrange(3_000, 150_000, 500)
                amount = Decimal(eur) * _RATE[currency]
                title = rng.choice(_DEALS_ES).format(year=self.now.year, n=rng.randint(4, 40))
                stage = self.weighted(
                    tuple(zip(_DEAL_STAGES, (20, 20, 20, 15, 15, 10), strict=True))
                )
                deal_id = self.uuid_at(created)
                self.rows[Deal].append(
                    {
                        "id": deal_id,
                        "workspace_id": self.workspace_id,
                        "contact_id": contact.id if contact else None,
                        "company_id": company.id,
                        "title": title,
                        "stage": stage,
                        "amount": amount,
                        "currency": currency,
                        "created_at": created,
                    }
                )
                self.event(
                    created,
                    "deal.created",
                    self.supervisor.actor,
                    contact_id=contact.id if contact else None,
                    data={"deal_id": str(deal_id), "stage": stage, "amount": str(amount)},
                )

    def tax_id(self, region: str) -> str:
        """A made-up company tax id in the country's format."""
        rng = self.rng
        if region == "ES":
            return f"B{rng.randint(10_000_000, 99_999_999)}"
        if region == "MX":
            letters = "".join(rng.choice("ABCDEFGHIJKLMNOPRSTUVWXYZ") for _ in range(3))
            return (
                f"{letters}{rng.randint(150101, 231231)}{rng.choice('ABCDEF')}{rng.randint(1, 9)}"
            )
        if region == "AR":
            return f"30-{rng.randint(10_000_000, 99_999_999)}-{rng.randint(0, 9)}"
        return f"{rng.randint(10, 99)}-{rng.randint(1_000_000, 9_999_999)}"

    # -- people --

    def phone(self, region: str) -> str:
        """A new, valid E.164 mobile number of the region."""
        rng = self.rng
        while True:
            if region == "ES":
                raw = f"+346{rng.randint(0, 99_999_999):08d}"
            elif region == "MX":
                area = rng.choice(("55", "33", "81", "998", "222", "951"))
                raw = f"+52{area}{rng.randint(0, 10 ** (10 - len(area)) - 1):0{10 - len(area)}d}"
            elif region == "AR":
                area = rng.choice(("11", "351", "341", "261", "294"))
                raw = f"+549{area}{rng.randint(0, 10 ** (10 - len(area)) - 1):0{10 - len(area)}d}"
            else:
                raw = f"+1{rng.choice(_US_AREAS)}55501{rng.randint(0, 99):02d}"
            phone = normalise_phone(raw, region)
            if phone and phone not in self.used_phones:
                self.used_phones.add(phone)
                return phone

    def email(self, first: str, last: str, region: str, company: _Company | None) -> str:
        """A new e-mail address made from the name."""
        rng = self.rng
        first_a, last_a = _ascii(first).replace(" ", ""), _ascii(last).replace(" ", "")
        while True:
            if company is not None:
                local = f"{first_a[0]}{last_a}" if rng.random() < 0.5 else f"{first_a}.{last_a}"
                domain = company.domain
            else:
                local = rng.choice(
                    (f"{first_a}.{last_a}", f"{first_a}{last_a}", f"{first_a[0]}{last_a}")
                )
                if rng.random() < 0.45:
                    local += str(rng.randint(1, 99))
                domain = rng.choice(_MAIL_DOMAINS[region])
            address = f"{local}@{domain}"
            if address not in self.used_emails:
                self.used_emails.add(address)
                return address
            company = None

    def make_person(self, index: int) -> _Person:
        """A customer from Spain, Mexico, Argentina or the United States."""
        rng = self.rng
        region = self.weighted({"ES": 45, "MX": 25, "AR": 12, "US": 18})
        lang, locale = "es", f"es-{region}"
        if region == "ES":
            firsts, lasts, two_surnames = _FIRST_ES, _LAST_ES, rng.random() < 0.6
            if rng.random() < 0.08:  # British and American residents on the coast
                firsts, lasts, two_surnames, lang, locale = (
                    _FIRST_EN,
                    _LAST_EN,
                    False,
                    "en",
                    "en-GB",
                )
        elif region == "MX":
            firsts, lasts, two_surnames = _FIRST_MX, _LAST_MX, rng.random() < 0.7
        elif region == "AR":
            firsts, lasts, two_surnames = _FIRST_AR, _LAST_AR, False
        elif rng.random() < 0.2:  # Spanish-speaking customers in the United States
            firsts, lasts, two_surnames, locale = _FIRST_MX, _LAST_MX, False, "es-US"
        else:
            firsts, lasts, two_surnames, lang, locale = _FIRST_EN, _LAST_EN, False, "en", "en-US"
        first = rng.choice(firsts).replace("_", " ")
        last = rng.choice(lasts)
        name = f"{first} {last}" + (f" {rng.choice(lasts)}" if two_surnames else "")
        local_companies = [c for c in self.companies if c.region == region]
        company = rng.choice(local_companies) if local_companies and rng.random() < 0.15 else None
        email = self.email(first, last, region, company) if rng.random() < 0.9 else None
        customer = 100_000 + index * 7 + rng.randint(0, 6)
        person = _Person(
            name=name,
            first=first,
            region=region,
            lang=lang,
            locale=locale,
            timezone=rng.choice(_TIMEZONES[region]),
            phone=self.phone(region),
            email=email,
            app_id=f"app-{customer}",
            company=company,
            attributes={
                "tier": "gold" if rng.random() < 0.1 else "standard",
                "customer_since": rng.randint(2016, self.now.year),
            },
            wa="wa_es" if region == "ES" or (region == "US" and lang == "en") else "wa_latam",
            sms="sms_us" if region == "US" else "sms_es",
            visitor=uuid.UUID(int=rng.getrandbits(128), version=4),
            # Signed in on the website, the site vouches for who they are.
            web_user=f"CL-{customer}" if rng.random() < 0.55 else None,
        )
        if company is not None:
            company.contacts.append(person)
        return person

    # -- contacts: what resolving a sender does --

    def claims(self, channel: _Channel, sender: Sender | None) -> list[Claim]:
        """The identities a sender claims on the channel, its own id first (as the flow does)."""
        assert sender is not None and self.workspace is not None
        own, others = _claims(channel.row, self.workspace, sender)
        return [own, *others]

    def owner(self, claims: list[Claim]) -> _Person | None:
        """Whose contact the message joins: the sender's id, else a verified phone or e-mail."""
        found = self.index.get((claims[0].kind, claims[0].scope, claims[0].value))
        if found is not None:
            return found.person
        for claim in claims[1:]:
            known = self.index.get((claim.kind, claim.scope, claim.value))
            if known is not None and claim.verified and known.row["verified"]:
                return known.person
        return None

    def reaches(self, person: _Person, claims: list[Claim]) -> bool:
        """Whether a message with these claims lands on the person's own contact.

        Hilo only joins what a channel vouches for: a customer known by phone who writes
        from an e-mail address Hilo has never seen is, rightly, a new contact. The demo keeps
        one contact per person, so it has them write where they are known instead.
        """
        owner = self.owner(claims)
        return owner is person if person.id is not None else owner is None

    def resolve(
        self, person: _Person, channel: _Channel, claims: list[Claim], at: datetime
    ) -> None:
        """Create the contact, add the identities not yet known, verify what is now vouched."""
        if person.id is None:
            person.id = self.uuid_at(at)
            person.created_at = at
            self.event(at, "contact.created", SYSTEM, channel=channel, contact_id=person.id)
        for claim in claims:
            known = self.index.get((claim.kind, claim.scope, claim.value))
            if known is None:
                self.identity(person, claim.kind, claim.scope, claim.value, at, claim.verified)
                self.event(
                    at,
                    "contact.identity_added",
                    SYSTEM,
                    channel=channel,
                    contact_id=person.id,
                    data={"kind": claim.kind, "verified": claim.verified},
                )
            elif claim.verified and not known.row["verified"]:
                known.row["verified"] = True

    def identity(
        self, person: _Person, kind: str, scope: str, value: str, at: datetime, verified: bool
    ) -> None:
        """A row of contact_identities."""
        row = {
            "id": self.uuid_at(at),
            "workspace_id": self.workspace_id,
            "contact_id": person.cid,
            "kind": kind,
            "scope": scope,
            "value": value,
            "verified": verified,
            "created_at": at,
        }
        self.rows[ContactIdentity].append(row)
        self.index[(kind, scope, value)] = _Known(person, row)

    def import_person(self, person: _Person) -> None:
        """A customer loaded from the old CRM who has not written yet."""
        admin = self.agents[0]
        at = self.window_start + timedelta(hours=3, seconds=self.rng.randint(0, 3600))
        person.id, person.created_at = self.uuid_at(at), at
        self.event(
            at, "contact.created", admin.actor, contact_id=person.id, data={"source": "import"}
        )
        for kind, value in (("phone", person.phone), ("email", person.email)):
            if value:
                self.identity(person, kind, "", value, at, False)
                self.event(
                    at,
                    "contact.identity_added",
                    admin.actor,
                    contact_id=person.id,
                    data={"kind": kind, "verified": False},
                )

    # -- conversations: playing steps --

    def play(self, person: _Person, steps: list[_Step]) -> _Conv:
        """Write the rows and events of one conversation, step by step."""
        conv: _Conv | None = None
        for step in sorted(steps, key=lambda s: s.at):
            if step.kind == "in":
                conv = self.inbound(conv, person, step)
                continue
            assert conv is not None, "a conversation starts with the customer"
            if step.kind in ("out", "bot", "survey"):
                self.reply(conv, step)
            elif step.kind in ("note", "bot_note"):
                self.note(conv, step)
            elif step.kind == "call":
                self.logged_call(conv, step)
            elif step.kind == "handoff":
                self.event(
                    step.at,
                    "bot.handoff",
                    BOT,
                    conv=conv,
                    data={
                        "intent": step.value,
                        "reason": step.reason,
                        "summary_message_id": _s(self.summaries.get(conv.id)),
                    },
                )
            elif step.kind == "team":
                previous = conv.team
                conv.team = self.teams[step.value]
                data = {"team_id": str(conv.team), "previous_team_id": _s(previous)}
                self.event(step.at, "conversation.team_changed", step.actor, conv=conv, data=data)
            elif step.kind == "assign":
                assert step.agent is not None
                previous_agent = conv.assignee
                conv.assignee = step.agent
                self.event(
                    step.at,
                    "conversation.assigned",
                    step.actor,
                    conv=conv,
                    data={
                        "assignee_id": str(step.agent.id),
                        "previous_assignee_id": str(previous_agent.id) if previous_agent else None,
                    },
                )
            elif step.kind == "priority":
                if step.value != conv.priority:
                    self.event(
                        step.at,
                        "conversation.priority_changed",
                        step.actor,
                        conv=conv,
                        data={"from": conv.priority, "to": step.value},
                    )
                    conv.priority = step.value
            elif step.kind == "label":
                if step.value not in conv.labels:
                    conv.labels.append(step.value)
                    self.event(
                        step.at,
                        "conversation.label_added",
                        step.actor,
                        conv=conv,
                        data={"label": step.value},
                    )
            elif step.kind == "status":
                self.status(conv, step.at, step.value, step.actor, step.reason, step.until)
        assert conv is not None
        self.rows[Conversation].append(
            {
                "id": conv.id,
                "workspace_id": self.workspace_id,
                "contact_id": person.cid,
                "status": conv.status,
                "priority": conv.priority,
                "assignee_id": conv.assignee.id if conv.assignee else None,
                "team_id": conv.team,
                "snoozed_until": conv.snoozed_until,
                "last_channel_id": conv.last_channel.id,
                "created_at": conv.created_at,
                "last_activity_at": conv.last_activity_at,
                "resolved_at": conv.resolved_at,
            }
        )
        for label in conv.labels:
            self.rows[ConversationLabel].append(
                {"conversation_id": conv.id, "label": label, "workspace_id": self.workspace_id}
            )
        return conv

    def status(
        self,
        conv: _Conv,
        at: datetime,
        status: str,
        actor: Actor,
        reason: str | None = None,
        until: datetime | None = None,
    ) -> None:
        """A status change, recorded like the conversation service records it."""
        previous = conv.status
        if previous == status and status != "snoozed":
            return
        conv.status = status
        conv.snoozed_until = until if status == "snoozed" else None
        if status == "resolved":
            conv.resolved_at = at
        event_type = "conversation.status_changed"
        if previous == "resolved" and status != "resolved":
            event_type = "conversation.reopened"
        elif status == "resolved":
            event_type = "conversation.resolved"
        data: dict[str, Any] = {"from": previous, "to": status}
        if reason:
            data["reason"] = reason
        if until:
            data["snoozed_until"] = until.isoformat()
        self.event(at, event_type, actor, channel=conv.last_channel, conv=conv, data=data)

    # -- what customers send, in each provider's own format --

    def concrete(self, person: _Person, key: str) -> _Channel:
        """The person's channel of a kind (their market's WhatsApp or SMS number)."""
        return self.channels[{"whatsapp": person.wa, "sms": person.sms}.get(key, key)]

    def delivery(
        self,
        channel: _Channel,
        person: _Person,
        conv: _Conv | None,
        text: str,
        at: datetime,
        subject: str = "",
    ) -> tuple[bytes, dict[str, str], InboundItem]:
        """What the provider posts (or Hilo reads) for the message, and the adapter's item."""
        sent = at - timedelta(seconds=self.rng.randint(1, 8))
        draft = _Draft(channel, person, conv, text, sent, subject)
        body, query = self.formats[channel.type](draft)
        request = RawRequest(body=body, headers={}, query=query, url=channel.url, received_at=at)
        [item] = get_adapter(channel.type).parse_inbound(request, channel.context)
        return body, query, item

    def sms_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        sid = "SM" + self.hex(32)
        params = twilio_common.inbound_sms_params(
            sid=sid,
            account_sid=TWILIO_ACCOUNT_SID,
            sender=d.person.phone,
            to=d.channel.number,
            text=d.text,
            to_country=phonenumbers.region_code_for_number(phonenumbers.parse(d.channel.number))
            or "",
            from_country=d.person.region,
            segments=_segments(d.text),
        )
        return _form(params), {}

    def whatsapp_value(self, channel: _Channel, **value: Any) -> bytes:
        """A Cloud API webhook for the channel's number, as Meta batches it."""
        metadata = {
            "display_phone_number": channel.number.lstrip("+"),
            "phone_number_id": str(channel.row.config["phone_number_id"]),
        }
        change = {
            "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
            "field": "messages",
        }
        return _json_body(
            {
                "object": "whatsapp_business_account",
                "entry": [{"id": META_BUSINESS_ACCOUNT, "changes": [change]}],
            }
        )

    def whatsapp_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        wa_id = _wa_id(d.person.phone)
        body = self.whatsapp_value(
            d.channel,
            contacts=[{"profile": {"name": d.person.name}, "wa_id": wa_id}],
            messages=[
                {
                    "from": wa_id,
                    "id": self.wamid(),
                    "timestamp": str(int(d.sent.timestamp())),
                    "text": {"body": d.text},
                    "type": "text",
                }
            ],
        )
        return body, {}

    def wamid(self) -> str:
        return "wamid.HBgL" + base64.b64encode(self.id_rng.randbytes(36)).decode()

    def voice_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        params = {
            "AccountSid": TWILIO_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": "CA" + self.hex(32),
            "CallStatus": "ringing",
            "Called": d.channel.number,
            "Caller": d.person.phone,
            "Direction": "inbound",
            "From": d.person.phone,
            "FromCountry": d.person.region,
            "To": d.channel.number,
            "ToCountry": "ES",
        }
        return _form(params), {}

    def email_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        assert d.person.email is not None, "only customers with an address write e-mails"
        domain = d.person.email.rpartition("@")[2]
        to, body = SUPPORT_ADDRESS, d.text
        headers = [("From", formataddr((d.person.name, d.person.email), "utf-8"))]
        if d.conv is not None and d.conv.last_email is not None:
            # An answer to our reply: to its Reply-To (which names the conversation), quoting it.
            reply_id, reply_text, reply_at = d.conv.last_email
            token = addressing.make_token(addressing.CONVERSATION, d.channel.id, d.conv.id)
            to = addressing.with_tag(SUPPORT_ADDRESS, token) or SUPPORT_ADDRESS
            headers += [
                ("Subject", mime.reply_subject(d.conv.subject)),
                ("In-Reply-To", f"<{reply_id}>"),
                ("References", " ".join(f"<{r}>" for r in d.conv.email_refs[-10:])),
            ]
            when = reply_at.astimezone(ZoneInfo(d.person.timezone)).strftime("%d/%m/%Y %H:%M")
            quoted = "\n".join(f"> {line}" if line else ">" for line in reply_text.splitlines())
            header = _QUOTE_HEADER[d.person.lang].format(date=when, address=SUPPORT_ADDRESS)
            body = f"{d.text}\n\n{header}\n{quoted}\n"
        else:
            headers.append(("Subject", d.subject or (d.conv.subject if d.conv is not None else "")))
        headers += [
            ("To", formataddr(("Ruta Rent a Car", to))),
            ("Date", format_datetime(d.sent.astimezone(ZoneInfo(d.person.timezone)))),
            ("Message-ID", f"<{self.hex(24)}@mail.{domain}>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/plain; charset="UTF-8"'),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ]
        # Written out by hand, as a mail client sends it (the email package is slow at this).
        lines = [f"{name}: {_header(value)}" for name, value in headers]
        encoded = quopri.encodestring(body.replace("\n", "\r\n").encode()).decode()
        raw = "\r\n".join(lines) + "\r\n\r\n" + encoded
        query = {"source": "smtp", "rcpt_to": to, "mail_from": d.person.email}
        return raw.encode("ascii"), query

    def webchat_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        signed = d.person.web_user is not None
        sender = Sender(
            external_id=f"u:{d.person.web_user}" if signed else f"v:{d.person.visitor}",
            name=d.person.name,
            # An anonymous visitor may type their address in the chat: unverified.
            email=d.person.email if signed or d.person.visitor.int % 2 else None,
            email_verified=signed and d.person.email is not None,
            phone=d.person.phone if signed else None,
            phone_verified=signed,
            id_verified=signed,
        )
        page = self.rng.choice(("/", "/reservas", "/oficinas", "/ayuda", "/mi-cuenta"))
        event = {
            "kind": "message",
            "visitor_id": str(d.person.visitor),
            "sender": asdict(sender),
            "client_message_id": f"c{int(d.sent.timestamp() * 1000):x}-{self.hex(6)}",
            "text": d.text,
            "page_url": WEBSITE + page,
            "sent_at": d.sent.isoformat(),
        }
        return ingest_body(event), {}

    def api_body(self, d: _Draft) -> tuple[bytes, dict[str, str]]:
        body = {
            "id": f"msg-{self.hex(16)}",
            "from": {
                "id": d.person.app_id,
                "name": d.person.name,
                "phone": d.person.phone,
                "email": d.person.email,
            },
            "text": d.text,
            "sent_at": d.sent.isoformat(),
        }
        return _json_body(body), {}

    @property
    def formats(
        self,
    ) -> dict[
        str,
        Callable[[_Draft], tuple[bytes, dict[str, str]]],
    ]:
        # The demo writes what each provider would have sent: one format per channel type.
        return {
            "sms": self.sms_body,
            "whatsapp": self.whatsapp_body,
            "voice": self.voice_body,
            "email": self.email_body,
            "webchat": self.webchat_body,
            "api": self.api_body,
        }

    def store(
        self,
        channel: _Channel,
        body: bytes,
        item: InboundItem,
        at: datetime,
        message_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """The delivery as the webhook stored it once, and the worker processed it."""
        inbound_id = self.uuid_at(at)
        self.rows[InboundEvent].append(
            {
                "id": inbound_id,
                "workspace_id": self.workspace_id,
                "channel_id": channel.id,
                "provider_event_id": item.provider_event_id,
                "message_id": message_id or self.uuid_at(at),
                "raw_body": body,
                "item": item.to_json(),
                "status": "processed",
                "error": None,
                "received_at": at,
                "processed_at": at + timedelta(milliseconds=self.rng.randint(40, 400)),
            }
        )
        return inbound_id

    def inbound(self, conv: _Conv | None, person: _Person, step: _Step) -> _Conv:
        """A customer's message, as the inbound flow stores, resolves and records it."""
        at = step.at
        current = None
        if conv is not None:
            current = conv.last_channel if conv.last_channel.carries_text else conv.text_channel
        target = self.concrete(person, step.key) if step.key else current
        assert target is not None
        text = step.text
        if step.switch and current is not None and target.id != current.id:
            text = _SWITCH_PREFIX[(person.lang, target.type)] + text
        if target.type == "voice":
            said = _GREETING.sub("", text, count=1)
            said = re.sub(r"^(\W*)(\w)", lambda m: m[1] + m[2].upper(), said, count=1)
            text = _VOICEMAIL[person.lang].format(first=person.first, text=said)
        if conv is not None and step.subject and not conv.subject:
            conv.subject = step.subject
        body, _query, item = self.delivery(target, person, conv, text, at, step.subject)
        claims = self.claims(target, item.sender)
        if not self.reaches(person, claims):
            # Not known on that channel: they write where they wrote last.
            fallback = current or self.concrete(person, person.last_key or "sms")
            target, text = fallback, step.text
            body, _query, item = self.delivery(target, person, conv, text, at, step.subject)
            claims = self.claims(target, item.sender)
        self.resolve(person, target, claims, at)
        if conv is None:
            conv = _Conv(self.uuid_at(at), person, at, at, target, subject=step.subject)
            self.event(at, "conversation.created", SYSTEM, channel=target, conv=conv)
        else:
            if conv.status != "open":
                self.status(conv, at, "open", SYSTEM, reason="customer_replied")
            if conv.last_channel.id != target.id:
                self.event(
                    at,
                    "conversation.channel_switched",
                    Actor.contact(person.cid),
                    channel=target,
                    conv=conv,
                    data={"from_channel_id": str(conv.last_channel.id)},
                )
        conv.last_channel = target
        person.last_key = target.type if target.type != "voice" else "sms"
        message_id = self.uuid_at(at)
        inbound_id = self.store(target, body, item, at, message_id)
        sent_at = datetime.fromisoformat(item.sent_at) if item.sent_at else None
        row = self.message(
            conv,
            message_id,
            at,
            kind="inbound",
            sender_type="contact",
            sender_id=person.cid,
            channel=target,
            status="received",
            text=item.text,
            attachments=item.attachments,
            data=item.data,
            provider_message_id=item.provider_event_id,
            inbound_event_id=inbound_id,
            sent_at=sent_at,
        )
        conv.last_activity_at = max(conv.last_activity_at, at)
        person.last_activity_at = at
        self.event(
            at,
            "message.received",
            Actor.contact(person.cid),
            channel=target,
            conv=conv,
            message_id=message_id,
            data={
                "channel_type": target.type,
                "provider_message_id": item.provider_event_id,
                "attachments": len(item.attachments),
                "sent_at": sent_at.isoformat() if sent_at else None,
            },
        )
        if target.type == "email":
            conv.email_refs.append(str(item.data["message_id"]))
            conv.subject = conv.subject or str(item.data.get("subject") or "")
        elif target.type == "webchat":
            self.visit(person, target, query_at=at)
        elif target.type == "voice":
            # Answered by the voicemail; the agent answers on the caller's SMS.
            conv.text_channel = self.channels[person.sms]
            self.voicemail(conv, row, target, person, at, text)
        if step.score is not None:
            self.event(
                at,
                "survey.answered",
                Actor.contact(person.cid),
                channel=target,
                conv=conv,
                message_id=message_id,
                data={"kind": "csat", "score": step.score},
            )
        return conv

    def visit(self, person: _Person, channel: _Channel, *, query_at: datetime) -> None:
        """The web chat visitor behind the person's messages (one browser)."""
        row = self.visitors.get(person.visitor)
        if row is None:
            signed = person.web_user is not None
            row = {
                "id": person.visitor,
                "workspace_id": self.workspace_id,
                "channel_id": channel.id,
                "user_id": person.web_user,
                "name": person.name,
                "email": person.email if signed or person.visitor.int % 2 else None,
                "email_verified": signed and person.email is not None,
                "phone": person.phone if signed else None,
                "phone_verified": signed,
                "locale": person.lang,
                "created_at": query_at - timedelta(seconds=self.rng.randint(20, 600)),
                "last_seen_at": query_at,
            }
            self.visitors[person.visitor] = row
            self.rows[WebchatVisitor].append(row)
        row["last_seen_at"] = max(row["last_seen_at"], query_at)

    # -- phone calls --

    def voicemail(
        self,
        conv: _Conv,
        row: dict[str, Any],
        channel: _Channel,
        person: _Person,
        at: datetime,
        transcript: str,
    ) -> None:
        """Twilio's callbacks after the greeting: the recording, the call's end, the transcript."""
        talk = max(6, round(len(transcript.split()) / 2.4))
        greeting = 9
        end = at + timedelta(seconds=greeting + talk + 2)
        call_sid = str(row["provider_message_id"])
        recording_sid = "RE" + self.hex(32)
        account = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}"
        recording_url = f"{account}/Recordings/{recording_sid}"
        transcription_sid = "TR" + self.hex(32)
        duration = greeting + talk + 2
        callbacks = (
            (
                end,
                {
                    "AccountSid": TWILIO_ACCOUNT_SID,
                    "CallSid": call_sid,
                    "RecordingSid": recording_sid,
                    "RecordingUrl": recording_url,
                    "RecordingStatus": "completed",
                    "RecordingDuration": str(talk),
                    "RecordingChannels": "1",
                    "RecordingStartTime": format_datetime(at + timedelta(seconds=greeting), True),
                    "RecordingSource": "RecordVerb",
                    "RecordingTrack": "both",
                },
            ),
            (
                end + timedelta(seconds=1),
                {
                    "AccountSid": TWILIO_ACCOUNT_SID,
                    "ApiVersion": "2010-04-01",
                    "CallSid": call_sid,
                    "CallStatus": "completed",
                    "CallDuration": str(duration),
                    "Duration": str(-(-duration // 60)),
                    "Direction": "inbound",
                    "From": person.phone,
                    "To": channel.number,
                    "Timestamp": format_datetime(end, True),
                    "CallbackSource": "call-progress-events",
                    "SequenceNumber": "0",
                },
            ),
            (
                end + self.seconds(20, 75),
                {
                    "AccountSid": TWILIO_ACCOUNT_SID,
                    "CallSid": call_sid,
                    "RecordingSid": recording_sid,
                    "RecordingUrl": recording_url,
                    "TranscriptionSid": transcription_sid,
                    "TranscriptionText": transcript,
                    "TranscriptionStatus": "completed",
                    "TranscriptionUrl": f"{account}/Transcriptions/{transcription_sid}",
                    "TranscriptionType": "fast",
                    "url": channel.url,
                },
            ),
        )
        for when, params in callbacks:
            body = _form(params)
            request = RawRequest(body=body, headers={}, query={}, url=channel.url, received_at=when)
            [item] = get_adapter(channel.type).parse_inbound(request, channel.context)
            self.store(channel, body, item, when)
            self.call_news(conv, row, channel, item, when)

    def call_news(
        self, conv: _Conv, row: dict[str, Any], channel: _Channel, item: InboundItem, at: datetime
    ) -> None:
        """News of a call merged into its message, as ``calls.service.do_apply_update`` does."""
        news: dict[str, Any] = dict(item.data.get("call") or {})
        call: dict[str, Any] = dict(row["data"].get("call") or {})

        def rank(status: Any) -> int:
            return calls.STATUS_RANK.get(str(status), calls.FINAL_RANK)

        status = news.pop("status", None)
        if status is not None:
            if call.get("status") is None or rank(status) > rank(call["status"]):
                call["status"] = status
            else:
                status = None
        changed = {key: value for key, value in news.items() if call.get(key) != value}
        call.update(changed)
        known = {a.get("media_id") for a in row["attachments"]}
        added = [a for a in item.attachments if a.get("media_id") not in known]
        transcript = item.text.strip()
        new_text = bool(transcript) and transcript not in row["text"]
        if status is None and not changed and not added and not new_text:
            return
        if added:
            row["attachments"] = [*row["attachments"], *added]
        if new_text:
            row["text"] = f"{row['text']}\n\n{transcript}" if row["text"] else transcript
        row["data"] = {**row["data"], "call": call}
        row["updated_at"] = max(row["updated_at"], at)
        reported = {**changed, **({"status": status} if status is not None else {})}
        data: dict[str, Any] = {"update": str(item.data.get("update") or "status")}
        data.update({key: reported[key] for key in calls.TRAIL_FIELDS if key in reported})
        if added:
            data["recordings"] = len(added)
        if new_text:
            data["transcribed"] = True
        self.event(
            at, "call.updated", SYSTEM, channel=channel, conv=conv, message_id=row["id"], data=data
        )

    def logged_call(self, conv: _Conv, step: _Step) -> None:
        """A call an agent made from their phone and logged in the thread; nothing is sent."""
        assert step.call is not None and step.agent is not None
        direction, outcome, duration = step.call
        channel = self.channels["voice"]
        started = step.at - timedelta(seconds=duration + self.rng.randint(20, 90))
        message_id = self.uuid_at(step.at)
        self.message(
            conv,
            message_id,
            step.at,
            kind="call",
            sender_type="user",
            sender_id=step.agent.id,
            channel=channel,
            status="logged",
            text=step.text.strip(),
            data={
                "call": {
                    "direction": direction,
                    "outcome": outcome,
                    "duration": duration,
                    "logged": True,
                    "started_at": started.astimezone(UTC).isoformat(),
                }
            },
        )
        conv.last_activity_at = max(conv.last_activity_at, step.at)
        self.event(
            step.at,
            "call.logged",
            step.actor,
            channel=channel,
            conv=conv,
            message_id=message_id,
            data={"direction": direction, "outcome": outcome, "duration": duration},
        )

    # -- what the company sends --

    def message(
        self,
        conv: _Conv,
        message_id: uuid.UUID,
        at: datetime,
        *,
        kind: str,
        sender_type: str,
        sender_id: uuid.UUID | None,
        channel: _Channel | None,
        status: str,
        text: str,
        attachments: list[dict[str, Any]] | None = None,
        data: dict[str, Any] | None = None,
        provider_message_id: str | None = None,
        inbound_event_id: uuid.UUID | None = None,
        sent_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A row of messages."""
        row = {
            "id": message_id,
            "workspace_id": self.workspace_id,
            "conversation_id": conv.id,
            "contact_id": conv.person.cid,
            "channel_id": channel.id if channel else None,
            "kind": kind,
            "sender_type": sender_type,
            "sender_id": sender_id,
            "provider_message_id": provider_message_id,
            "status": status,
            "error": None,
            "text": text,
            "attachments": attachments or [],
            "data": data or {},
            "inbound_event_id": inbound_event_id,
            "sent_at": sent_at,
            "created_at": at,
            "updated_at": updated_at or at,
        }
        self.rows[Message].append(row)
        return row

    def reply_channel(self, conv: _Conv) -> _Channel:
        """Where a reply goes: the customer's last channel, or after a call their SMS."""
        if conv.last_channel.carries_text:
            return conv.last_channel
        assert conv.text_channel is not None
        return conv.text_channel

    def provider_id(self, channel: _Channel, message_id: uuid.UUID) -> str:
        """The id the provider answers a send with (what its receipts name)."""
        if channel.type == "sms":
            return "SM" + self.hex(32)
        if channel.type == "whatsapp":
            return self.wamid()
        if channel.type == "email":
            return email_channel.own_message_id(message_id, SUPPORT_ADDRESS)
        return str(message_id)

    def reply(self, conv: _Conv, step: _Step) -> None:
        """A reply by an agent, the bot or Hilo itself: queued, sent, and what came back."""
        channel = self.channels[step.via] if step.via else self.reply_channel(conv)
        sender_type, actor = {
            "out": ("user", step.actor),
            "bot": ("bot", BOT),
            "survey": ("system", SYSTEM),
        }[step.kind]
        message_id = self.uuid_at(step.at)
        sent = step.at + self.seconds(0.3, 3)
        provider_id = self.provider_id(channel, message_id)
        row = self.message(
            conv,
            message_id,
            step.at,
            kind="outbound",
            sender_type=sender_type,
            sender_id=step.agent.id if step.kind == "out" and step.agent else None,
            channel=channel,
            status="sent",
            text=step.text,
            provider_message_id=provider_id,
            updated_at=sent,
        )
        conv.last_activity_at = max(conv.last_activity_at, step.at)
        if channel.type == "email":
            conv.email_refs.append(provider_id)
            conv.last_email = (provider_id, step.text, step.at)
        common: dict[str, Any] = {"channel": channel, "conv": conv, "message_id": message_id}
        self.event(step.at, "message.queued", actor, data={"channel_type": channel.type}, **common)
        if step.kind == "bot":
            self.event(step.at, "bot.replied", BOT, data={"intent": step.value}, **common)
        elif step.kind == "survey":
            self.event(step.at, "survey.sent", SYSTEM, data={"kind": "csat"}, **common)
        self.event(sent, "message.sent", SYSTEM, data={"status": "sent"}, **common)
        self.receipts(conv, row, channel, step, sent)

    def receipts(
        self, conv: _Conv, row: dict[str, Any], channel: _Channel, step: _Step, sent: datetime
    ) -> None:
        """The receipts the provider posts back (none for e-mail, calls and the app)."""
        person = conv.person
        provider_id = str(row["provider_message_id"])
        statuses: list[tuple[str, datetime]] = []
        if channel.type in ("sms", "whatsapp") and step.delivered:
            delivered = sent + self.seconds(1, 25)
            statuses.append(("delivered", delivered))
            if channel.type == "whatsapp" and self.rng.random() < 0.7:
                statuses.append(("read", delivered + self.minutes(0.2, 90)))
        elif channel.type == "webchat":
            if not step.unseen:
                statuses.append(("read", sent + self.seconds(2, 40)))
            self.email_fallback(conv, row, sent + timedelta(seconds=120), seen=not step.unseen)
        for status, at in statuses:
            if channel.type == "sms":
                params = {
                    "MessageSid": provider_id,
                    "SmsSid": provider_id,
                    "SmsStatus": status,
                    "MessageStatus": status,
                    "AccountSid": TWILIO_ACCOUNT_SID,
                    "From": channel.number,
                    "To": person.phone,
                    "ApiVersion": "2010-04-01",
                    "RawDlrDoneDate": at.strftime("%y%m%d%H%M"),
                }
                body = _form(params)
            elif channel.type == "whatsapp":
                receipt: dict[str, Any] = {
                    "id": provider_id,
                    "status": status,
                    "timestamp": str(int(at.timestamp())),
                    "recipient_id": _wa_id(person.phone),
                    "biz_opaque_callback_data": str(row["id"]),
                }
                if status == "delivered":
                    receipt["pricing"] = {
                        "billable": False,
                        "pricing_model": "CBP",
                        "category": "service",
                    }
                body = self.whatsapp_value(channel, statuses=[receipt])
            else:
                event = {
                    "kind": "status",
                    "visitor_id": str(person.visitor),
                    "message_id": str(row["id"]),
                    "status": status,
                }
                body = ingest_body(event)
            request = RawRequest(body=body, headers={}, query={}, url=channel.url, received_at=at)
            [item] = get_adapter(channel.type).parse_inbound(request, channel.context)
            self.store(channel, body, item, at)
            row["status"], row["updated_at"] = status, at
            self.event(
                at,
                f"message.{status}",
                SYSTEM,
                channel=channel,
                conv=conv,
                message_id=row["id"],
                data={"status": status},
            )

    def email_fallback(self, conv: _Conv, row: dict[str, Any], at: datetime, *, seen: bool) -> None:
        """A web chat reply the visitor saw in time, or its copy by e-mail (email_fallback)."""
        person = conv.person
        note: dict[str, Any]
        known = self.index.get(("email", "", person.email or ""))
        if seen:
            note = {"status": "not_needed"}
        elif known is None or known.person is not person:
            note = {"status": "no_email_address"}
        else:
            channel = self.channels["email"]
            copy_id = self.uuid_at(at)
            provider_id = email_channel.own_message_id(copy_id, SUPPORT_ADDRESS)
            sent = at + self.seconds(0.5, 4)
            self.message(
                conv,
                copy_id,
                at,
                kind="outbound",
                sender_type=str(row["sender_type"]),
                sender_id=row["sender_id"],
                channel=channel,
                status="sent",
                text=str(row["text"]),
                data={"fallback_for": str(row["id"])},
                provider_message_id=provider_id,
                updated_at=sent,
            )
            common: dict[str, Any] = {"channel": channel, "conv": conv, "message_id": copy_id}
            self.event(at, "message.queued", SYSTEM, data={"channel_type": "email"}, **common)
            self.event(sent, "message.sent", SYSTEM, data={"status": "sent"}, **common)
            note = {"status": "queued", "message_id": str(copy_id)}
        row["data"] = {**row["data"], "email_fallback": note}
        row["updated_at"] = max(row["updated_at"], at)
        self.event(
            at,
            "message.email_fallback",
            SYSTEM,
            channel=self.channels["webchat"],
            conv=conv,
            message_id=row["id"],
            data=note,
        )

    def note(self, conv: _Conv, step: _Step) -> None:
        """An internal note: stored, never sent."""
        bot = step.kind == "bot_note"
        message_id = self.uuid_at(step.at)
        self.message(
            conv,
            message_id,
            step.at,
            kind="note",
            sender_type="bot" if bot else "user",
            sender_id=None if bot or step.agent is None else step.agent.id,
            channel=None,
            status="stored",
            text=step.text,
        )
        if bot:
            self.summaries[conv.id] = message_id
        actor = BOT if bot else step.actor
        self.event(step.at, "note.created", actor, conv=conv, message_id=message_id)

    # -- conversations: planning --

    def context(
        self, person: _Person, topic: Topic, agent: _Agent, start: datetime
    ) -> dict[str, str]:
        """The values a script's placeholders take in one conversation."""
        rng = self.rng
        office_region = person.region if person.region != "US" else rng.choice(("ES", "MX"))
        if person.region == "AR" and rng.random() < 0.25:
            office_region = "ES"
        lang = person.lang
        currency = _CURRENCY[office_region]
        eur = rng.randint(*topic.eur) if topic.eur != (0, 0) else rng.randint(60, 400)
        day = start + timedelta(days=rng.randint(2, 20))
        if lang == "es":
            date = f"{day.day} de {_MONTHS_ES[day.month - 1]}"
        else:
            date = f"{_MONTHS_EN[day.month - 1]} {day.day}"
        if office_region == "ES":
            plate = f"{rng.randint(0, 9999):04d} " + "".join(rng.choices(_CONSONANTS, k=3))
        elif office_region == "MX":
            letters = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=3))
            plate = f"{letters}-{rng.randint(100, 999)}-{rng.choice('ABCDEFG')}"
        else:
            a = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=2))
            b = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=2))
            plate = f"{a} {rng.randint(100, 999)} {b}"
        company = person.company or rng.choice(
            [c for c in self.companies if c.region == person.region] or self.companies
        )
        taxid_name = {"ES": "NIF", "MX": "RFC", "AR": "CUIT", "US": "EIN"}[company.region]
        car = {"es-ES": "coche", "es-MX": "auto", "es-AR": "auto", "es-US": "carro"}
        booking = f"R-{rng.randint(10_000, 99_999)}"
        person.attributes.setdefault("last_booking", booking)
        fallback_email = "su correo" if lang == "es" else "your e-mail address"
        return {
            "first": person.first,
            "agent": agent.first,
            "booking": booking,
            "office": rng.choice(_OFFICES[office_region]),
            "date": date,
            "time": rng.choice(("17:30", "18:00", "18:30", "19:15", "20:00")),
            "car": car.get(person.locale, "coche" if lang == "es" else "car"),
            "plate": plate,
            "place": rng.choice(_PLACES[(office_region, lang)]),
            "amount": _money(eur, currency, lang),
            "invoice": f"F{start.year}-{rng.randint(1, 99_999):05d}",
            "ref": f"{topic.ref}-{rng.randint(100_000, 999_999)}",
            "minutes": str(rng.choice((20, 25, 30, 35, 40, 45))),
            "card": f"{rng.randint(0, 9999):04d}",
            "company": company.name,
            "taxid_name": taxid_name,
            "taxid": company.tax_id,
            "email": person.email or fallback_email,
        }

    def truncate(self, script: Script, status: str) -> Script:
        """The part of a script that has happened, given where the conversation stands."""
        kinds = [kind for kind, _ in script]
        if status == "open":
            ends = [i for i, k in enumerate(kinds) if k == "in"]
            cut = ends[0] if self.rng.random() < 0.5 else self.rng.choice(ends)
        elif status in ("pending", "snoozed"):
            waits = [
                i
                for i, k in enumerate(kinds)
                if k == "out" and i + 1 < len(kinds) and kinds[i + 1] == "in"
            ]
            outs = [i for i, k in enumerate(kinds) if k == "out"]
            cut = self.rng.choice(waits) if waits else outs[0]
        else:
            cut = len(script) - 1
        return script[: cut + 1]

    def plan(
        self, person: _Person, end: datetime, status: str
    ) -> tuple[datetime, list[_Step]] | None:
        """The steps of one conversation ending at ``end``, or None if it would start too early."""
        rng = self.rng
        topic = TOPICS[rng.choices(range(len(TOPICS)), weights=[t.weight for t in TOPICS])[0]]
        scripts = topic.es if person.lang == "es" else topic.en
        script = self.truncate(rng.choice(scripts), status)
        agent = self.agent(topic.team, person.lang)
        # Relative times first; the start follows from where the conversation must end.
        offsets: list[timedelta] = []
        elapsed = timedelta(0)
        previous: str | None = None
        answered = False
        for kind, _text in script:
            if previous is None:
                gap = timedelta(0)
            elif kind == "in":
                gap = self.minutes(0.5, 5) if previous == "in" else self.minutes(2, 300)
            elif kind == "out":
                if not answered:
                    gap = self.minutes(2, 120 if topic.team != ROADSIDE else 15)
                else:
                    gap = self.minutes(1, 20) if previous == "in" else self.minutes(5, 90)
                answered = True
            else:
                gap = self.minutes(1, 12)
            elapsed += gap
            offsets.append(elapsed)
            previous = kind
        tail = self.minutes(2, 45) if status != "open" else timedelta(0)
        start = end - elapsed - tail
        if start < self.window_start:
            return None
        ctx = self.context(person, topic, agent, start)
        key = self.weighted(_CHANNEL_MIX[person.region])
        if key == "email" and person.email is None:
            key = "webchat"
        subject = _SUBJECTS[topic.key][0 if person.lang == "es" else 1].format_map(ctx)
        inbound_at = [i for i, (kind, _) in enumerate(script) if kind == "in"]
        switch_at: int | None = None
        if len(inbound_at) >= 2 and key != "voice" and rng.random() < 0.2:
            switch_at = rng.choice(inbound_at[1:])
        switch_to = rng.choice([k for k in _SWITCHABLE if k != key])
        outs = [i for i, (kind, _) in enumerate(script) if kind == "out"]
        # A web chat visitor who left before the last answer: it follows them by e-mail.
        last_word = outs and outs[-1] == len(script) - 1 and status == "resolved"
        unseen_at = outs[-1] if last_word and rng.random() < 0.3 else None
        steps: list[_Step] = []
        for i, ((kind, text), offset) in enumerate(zip(script, offsets, strict=True)):
            at = start + offset
            body = text.format_map(ctx)
            if kind == "in":
                first = i == 0
                steps.append(
                    _Step(
                        at,
                        "in",
                        body,
                        key=key if first else switch_to if i == switch_at else None,
                        switch=i == switch_at,
                        subject=subject if first else "",
                    )
                )
            elif kind == "out":
                if key == "voice" and i == outs[0] and rng.random() < 0.5:
                    # Returning the call first: nobody answers, so the reply goes by SMS.
                    steps.append(
                        _Step(
                            max(start + timedelta(seconds=40), at - self.minutes(1, 4)),
                            "call",
                            agent=agent,
                            actor=agent.actor,
                            call=("outbound", "no_answer", 0),
                        )
                    )
                delivered = rng.random() < 0.9
                steps.append(
                    _Step(
                        at,
                        "out",
                        body,
                        agent=agent,
                        actor=agent.actor,
                        delivered=delivered,
                        unseen=i == unseen_at,
                    )
                )
                following = script[i + 1][0] if i + 1 < len(script) else None
                if following == "in" and rng.random() < 0.25:
                    steps.append(
                        _Step(
                            at + timedelta(seconds=30), "status", value="pending", actor=agent.actor
                        )
                    )
            else:
                steps.append(_Step(at, "note", body, agent=agent, actor=agent.actor))
        first_in = start
        steps.append(_Step(first_in + timedelta(seconds=20), "team", value=topic.team))
        agent_turns = [start + o for (k, _), o in zip(script, offsets, strict=True) if k != "in"]
        assigned: _Agent | None = None
        assign_at = first_in + timedelta(seconds=25)
        if agent_turns:
            assign_at = max(
                first_in + timedelta(seconds=30), agent_turns[0] - timedelta(seconds=30)
            )
            by = agent.actor if rng.random() < 0.6 else self.supervisor.actor
            steps.append(_Step(assign_at, "assign", agent=agent, actor=by))
            assigned = agent
        elif rng.random() < 0.4:
            steps.append(_Step(assign_at, "assign", agent=agent, actor=SYSTEM))
            assigned = agent
        labeller = assigned.actor if assigned else SYSTEM
        label_at = assign_at + timedelta(seconds=5)
        priority = self.weighted(topic.priorities)
        steps.append(_Step(label_at, "priority", value=priority, actor=labeller))
        labels = [topic.label, *topic.extra_labels]
        if person.lang == "en":
            labels.append("english")
        if person.attributes.get("tier") == "gold":
            labels.append("vip")
        steps.extend(_Step(label_at, "label", value=label, actor=labeller) for label in labels)
        last = start + offsets[-1] + tail
        if status == "resolved":
            steps.append(_Step(last, "status", value="resolved", actor=agent.actor))
        elif status == "pending":
            steps.append(_Step(last, "status", value="pending", actor=agent.actor))
        elif status == "snoozed":
            until = (self.now + timedelta(days=rng.randint(1, 5))).replace(
                hour=8, minute=0, second=0, microsecond=0
            )
            steps.append(_Step(last, "status", value="snoozed", actor=agent.actor, until=until))
        return start, steps

    def daytime(self, when: datetime, region: str) -> datetime:
        """``when`` moved to between 9:00 and 22:00 local time, and never in the future."""
        local_hour = 9 + 13 * self.rng.random()
        utc_hour = (local_hour - _UTC_OFFSET[region]) % 24
        moved = when.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=utc_hour)
        while moved > self.now - timedelta(minutes=3):
            moved -= timedelta(days=1)
        return moved

    def last_status(self, days_ago: float) -> str:
        """Where a contact's latest conversation stands, given how recent it is."""
        if days_ago < 1.5:
            return self.weighted({"open": 45, "pending": 20, "snoozed": 8, "resolved": 27})
        if days_ago < 5:
            return self.weighted({"open": 20, "pending": 20, "snoozed": 10, "resolved": 50})
        if days_ago < 10:
            return self.weighted({"resolved": 85, "pending": 10, "open": 5})
        return self.weighted({"resolved": 96, "pending": 3, "open": 1})

    def conversations_of(self, person: _Person) -> None:
        """One to three conversations, far enough apart not to reopen each other."""
        rng = self.rng
        count = self.weighted({"1": 50, "2": 32, "3": 18})
        days_ago = 0.004 + (DAYS - 1) * rng.random() ** 1.5
        end = self.daytime(self.now - timedelta(days=days_ago), person.region)
        days_ago = (self.now - end).total_seconds() / 86400
        plans: list[list[_Step]] = []
        for n in range(int(count)):
            status = self.last_status(days_ago) if n == 0 else "resolved"
            planned = self.plan(person, end, status)
            if planned is None:
                break
            start, steps = planned
            plans.append(steps)
            end = start - timedelta(days=_REOPEN_DAYS + 1 + rng.uniform(0, 15))
            end = self.daytime(end, person.region)
            days_ago = (self.now - end).total_seconds() / 86400
        if not plans:
            self.import_person(person)
        for steps in reversed(plans):
            self.play(person, steps)

    # -- the car-rental story of PRODUCT.md --

    # -- the car-rental story of PRODUCT.md --

    def story(self) -> _Person:
        """SMS breakdown, bot hand-off, a call, tow-truck updates, CSAT; then WhatsApp."""
        ana = next(a for a in self.agents if a.name == "Ana Beltrán")
        sofia = next(a for a in self.agents if a.name == "Sofía Navarro")
        person = _Person(
            name=STORY_NAME,
            first="Marta",
            region="ES",
            lang="es",
            locale="es-ES",
            timezone="Europe/Madrid",
            phone=STORY_PHONE,
            email="marta.jimenez.ruiz@gmail.com",
            app_id="app-104711",
            company=None,
            attributes={
                "tier": "gold",
                "customer_since": 2019,
                "last_booking": "R-48213",
                "vehicle": "Seat León · 1234 LMN",
            },
            wa="wa_es",
            sms="sms_es",
            visitor=uuid.UUID("3f9a1c22-b710-4c1e-9d3a-5e8f0b2a6c41"),
        )
        self.used_emails.add("marta.jimenez.ruiz@gmail.com")
        day = (self.now - timedelta(days=9)).replace(hour=14, minute=42, second=0, microsecond=0)

        def t(minutes: float, days: int = 0) -> datetime:
            return day + timedelta(days=days, minutes=minutes)

        eta = t(56).astimezone(ZoneInfo(person.timezone)).strftime("%H:%M")

        summary = (
            "Resumen del asistente: avería (sale humo del capó, no arranca) · reserva R-48213 · "
            "Seat León 1234 LMN · A-7, km 1036, sentido Málaga (Marbella) · tres ocupantes, "
            "en el arcén y a salvo. Derivado a Asistencia en carretera."
        )
        call = (
            "Ana: Hola Marta, soy Ana, de Asistencia en carretera. ¿Están todos bien?\n"
            "Marta: Sí, estamos bien, solo un poco asustados. El coche echaba humo.\n"
            "Ana: No lo arranquen más. La grúa sale ahora y un taxi les llevará a Málaga "
            "Aeropuerto, donde tendrán otro coche sin coste.\n"
            "Marta: Perfecto, muchas gracias.\n"
            "(Grúa solicitada, ref. GR-20931; taxi para tres personas.)"
        )
        steps = [
            _Step(
                t(0),
                "in",
                "Hola, el coche de alquiler se ha averiado en la autovía. Sale humo del capó y "
                "no arranca. Reserva R-48213.",
                key="sms",
            ),
            _Step(
                t(0.1),
                "bot",
                "Siento lo ocurrido, Marta. ¿Están en un lugar seguro? Indíquenos dónde se "
                "encuentran: carretera y punto kilométrico, o el pueblo más cercano.",
                value="breakdown",
            ),
            _Step(
                t(2),
                "in",
                "Sí, estamos en el arcén. A-7, km 1036, dirección Málaga, a la altura de Marbella.",
            ),
            _Step(
                t(2.1),
                "bot",
                "Gracias. Le paso con nuestro equipo de Asistencia en carretera, que ya tiene "
                "todos los datos. No hace falta que los repita.",
                value="breakdown",
            ),
            _Step(t(2.15), "bot_note", summary),
            _Step(t(2.2), "handoff", value="breakdown", reason="needs_roadside_team"),
            _Step(t(2.2), "team", value=ROADSIDE, actor=BOT),
            _Step(t(2.2), "priority", value="urgent", actor=BOT),
            _Step(t(2.2), "label", value="avería", actor=BOT),
            _Step(t(2.2), "label", value="vip", actor=BOT),
            _Step(t(3), "assign", agent=ana, actor=ana.actor),
            _Step(
                t(10), "call", call, call=("outbound", "answered", 252), agent=ana, actor=ana.actor
            ),
            _Step(
                t(13),
                "out",
                "Marta, la grúa (ref. GR-20931) ya está de camino; llegada prevista a las "
                f"{eta}. Un taxi les llevará a nuestra oficina de Málaga Aeropuerto.",
                agent=ana,
                actor=ana.actor,
            ),
            _Step(
                t(49),
                "out",
                "La grúa está a 5 minutos de su ubicación.",
                agent=ana,
                actor=ana.actor,
            ),
            _Step(t(58), "in", "Ya ha llegado la grúa. ¡Gracias!"),
            _Step(
                t(108),
                "out",
                "Su coche de sustitución (Toyota Corolla, 5678 KJH) les espera en Málaga "
                "Aeropuerto, mostrador 3. Sin coste adicional.",
                agent=ana,
                actor=ana.actor,
            ),
            _Step(t(158), "in", "Ya tenemos el coche nuevo. Muy buena atención."),
            _Step(
                t(1038),
                "survey",
                "Ruta Rent a Car: ¿qué tal le atendimos ayer? Responda con un número del 1 "
                "(mal) al 5 (excelente).",
            ),
            _Step(t(1050), "in", "5", score=5),
            _Step(t(1051), "out", "¡Gracias, Marta! Buen viaje.", agent=ana, actor=ana.actor),
            _Step(t(1052), "status", value="resolved", agent=ana, actor=ana.actor),
            # Six days later, from the same number, on WhatsApp: the same thread reopens.
            _Step(
                t(-100, days=6),
                "in",
                "Hola, soy Marta (la de la avería en Marbella). Me ha llegado un cargo de 180 € "
                "por la grúa, ¿es correcto?",
                key="whatsapp",
            ),
            _Step(t(-95, days=6), "team", value=BILLING, actor=ana.actor),
            _Step(t(-95, days=6), "assign", agent=sofia, actor=ana.actor),
            _Step(t(-95, days=6), "label", value="factura", actor=ana.actor),
            _Step(
                t(-88, days=6),
                "note",
                "Todo el historial a la vista: avería cubierta por la asistencia, la grúa no se "
                "cobra. Anulo el cargo de 180 €.",
                agent=sofia,
                actor=sofia.actor,
            ),
            _Step(
                t(-84, days=6),
                "out",
                "Hola Marta, soy Sofía, de Facturación. Veo todo lo que pasó con la avería en la "
                "A-7. Ese cargo es un error: la grúa está incluida en la asistencia. Ya lo hemos "
                "anulado; verá el abono en 3 a 5 días.",
                agent=sofia,
                actor=sofia.actor,
            ),
            _Step(
                t(-80, days=6),
                "in",
                "Genial, gracias por no hacerme explicarlo todo otra vez 🙏",
            ),
            _Step(t(-75, days=6), "status", value="resolved", agent=sofia, actor=sofia.actor),
        ]
        self.play(person, steps)
        return person

    # -- writing --

    def contact_rows(self) -> None:
        """Contacts last, once their first and last activity are known."""
        for person in self.people:
            if person.id is None:
                continue
            assert person.created_at is not None
            self.rows[Contact].append(
                {
                    "id": person.id,
                    "workspace_id": self.workspace_id,
                    "name": person.name,
                    "company_id": person.company.id if person.company else None,
                    "locale": person.locale,
                    "timezone": person.timezone,
                    "attributes": person.attributes,
                    "merged_into_id": None,
                    "created_at": person.created_at,
                    "last_activity_at": person.last_activity_at,
                }
            )

    async def write(self) -> None:
        """Bulk-insert the rows (parents first), then record the events in time order."""
        session = self.session
        for model in _WRITTEN:
            rows = self.rows[model]
            if rows:
                await session.execute(insert(model), rows)
        for planned in sorted(self.planned, key=lambda p: (p.at, p.order)):
            row = events.record(
                session,
                planned.type,
                workspace_id=self.workspace_id,
                actor=planned.actor,
                data=planned.data,
                **planned.ids,
            )
            row.created_at = planned.at
        await session.flush()

    async def build(self) -> tuple[_Person, _Agent]:
        """The whole data set; returns the story's customer and the admin."""
        await self.setup()
        self.make_companies()
        story = self.story()
        self.people.append(story)
        for index in range(CONTACTS - 1):
            person = self.make_person(index)
            self.people.append(person)
            if self.rng.random() < 0.08:
                self.import_person(person)
            else:
                self.conversations_of(person)
        self.make_deals()
        self.contact_rows()
        await self.write()
        return story, self.agents[0]


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None


# --- entry points -------------------------------------------------------------------------


async def is_empty(session: AsyncSession) -> bool:
    """Whether no workspace exists yet."""
    return (await session.scalar(select(Workspace.id).limit(1))) is None


async def erase(session: AsyncSession) -> None:
    """Delete every row of every table, children before parents."""
    for table in reversed(Base.metadata.sorted_tables):
        await session.execute(table.delete())


async def count_rows(session: AsyncSession) -> dict[str, int]:
    """Rows per table, for the summary."""
    counts: dict[str, int] = {}
    for model in (Contact, Conversation, Message, Event, Company, Deal):
        counts[model.__tablename__] = int(
            await session.scalar(select(func.count()).select_from(model)) or 0
        )
    return counts


async def generate(db: Database, *, seed: int, reset: bool) -> DemoResult:
    """Fill the (migrated) database with the demo workspace, in one transaction."""
    async with db.transaction() as session:
        if reset:
            await erase(session)
        elif not await is_empty(session):
            raise DatabaseNotEmpty()
        builder = _Builder(session, seed)
        story, admin = await builder.build()
        token = await auth.do_create_token(
            session,
            workspace_id=builder.workspace_id,
            role="admin",
            name="demo",
            user_id=admin.id,
            actor=Actor("cli"),
        )
        counts = await count_rows(session)
    users = [
        DemoUser(f"{local}@{_USER_DOMAIN}", name, role) for local, name, role, _l, _t in _USERS
    ]
    return DemoResult(
        users=users,
        password=PASSWORD,
        token=token,
        counts=counts,
        story_contact=story.name,
        story_phone=story.phone,
    )
