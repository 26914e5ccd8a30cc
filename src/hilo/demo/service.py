"""The demo data set: "Ruta Rent a Car", a car-rental company's support in Spanish and English.

Everything is written the way the real paths write it (rows plus the events of
``hilo.events``), but in bulk and with timestamps spread over the last 60 days. The same seed
gives the same data set, relative to the hour it is generated in.
"""

from __future__ import annotations

import json
import random
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.auth import service as auth
from hilo.channels import service as channels
from hilo.channels.base import InboundItem, Sender
from hilo.clock import now
from hilo.contacts.service import normalise_phone
from hilo.db import Base, Database
from hilo.events import Actor
from hilo.models import (
    Company,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Deal,
    Event,
    InboundEvent,
    Message,
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

# Only the signed "api" channel type exists so far: each of these stands for the channel it is
# named after, bridged through the company's own app.
_CHANNELS = (
    ("app", "App móvil"),
    ("web", "Web"),
    ("whatsapp", "WhatsApp (vía app)"),
    ("sms", "SMS (vía app)"),
)
_CHANNEL_MIX = {
    "ES": {"app": 30, "web": 25, "whatsapp": 35, "sms": 10},
    "MX": {"app": 15, "web": 15, "whatsapp": 60, "sms": 10},
    "AR": {"app": 15, "web": 20, "whatsapp": 55, "sms": 10},
    "US": {"app": 25, "web": 35, "whatsapp": 15, "sms": 25},
}
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
    ("es", "app"): "Sigo desde la app. ",
    ("es", "web"): "Les escribo desde la web, ya desde el ordenador. ",
    ("en", "whatsapp"): "Switching to WhatsApp, it's easier for me. ",
    ("en", "sms"): "Texting you instead, my data is patchy here. ",
    ("en", "app"): "Carrying on in the app. ",
    ("en", "web"): "Writing from your website now. ",
}
# Hours from UTC, roughly, to keep customers writing in their daytime.
_UTC_OFFSET = {"ES": 1, "MX": -6, "AR": -3, "US": -5}


# --- the builder ------------------------------------------------------------------------


@dataclass
class _Channel:
    key: str
    id: uuid.UUID


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
    web_id: str
    company: _Company | None
    attributes: dict[str, Any]
    id: uuid.UUID | None = None
    created_at: datetime | None = None
    last_activity_at: datetime | None = None
    known: set[tuple[str, str]] = field(default_factory=set)

    @property
    def cid(self) -> uuid.UUID:
        assert self.id is not None, "contact not created yet"
        return self.id

    def external_id(self, channel: _Channel) -> str:
        """How the channel's app names this customer."""
        return {
            "app": self.app_id,
            "web": self.web_id,
            "whatsapp": self.phone.lstrip("+"),
            "sms": self.phone,
        }[channel.key]


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


@dataclass
class _Step:
    """One thing that happens in a conversation, at a time."""

    at: datetime
    kind: str  # in, out, bot, note, bot_note, team, assign, priority, label, status
    text: str = ""
    channel: _Channel | None = None
    agent: _Agent | None = None
    actor: Actor = SYSTEM
    value: str = ""
    reason: str | None = None
    until: datetime | None = None
    delivered: bool = True


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
        self.channels: dict[str, _Channel] = {}
        self.teams: dict[str, uuid.UUID] = {}
        self.agents: list[_Agent] = []
        self.companies: list[_Company] = []
        self.people: list[_Person] = []
        self.rows: dict[type[Base], list[dict[str, Any]]] = {
            model: []
            for model in (
                Company,
                Contact,
                ContactIdentity,
                Deal,
                Conversation,
                ConversationLabel,
                InboundEvent,
                Message,
            )
        }
        self.planned: list[_Planned] = []
        self.used_phones: set[str] = {STORY_PHONE}
        self.used_emails: set[str] = set()
        self.counter = 0

    # -- ids, events, small helpers --

    def uuid_at(self, when: datetime) -> uuid.UUID:
        """A UUIDv7 of ``when``, so that ids sort like the times they stand for."""
        ms = int(when.timestamp() * 1000)
        value = (ms & 0xFFFF_FFFF_FFFF) << 80 | self.id_rng.getrandbits(80)
        value = (value & ~(0xF << 76)) | (0x7 << 76)
        value = (value & ~(0x3 << 62)) | (0x2 << 62)
        return uuid.UUID(int=value)

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

    # -- the company --

    async def setup(self) -> None:
        """Workspace, users, teams and channels, through the services that own them."""
        session = self.session
        workspace = await auth.do_get_or_create_workspace(session, SLUG)
        workspace.name = WORKSPACE_NAME
        workspace.default_region, workspace.default_locale = "ES", "es"
        workspace.timezone = "Europe/Madrid"
        workspace.created_at = self.setup_at
        self.workspace_id = workspace.id
        cli = Actor("cli")
        by_name: dict[str, _Agent] = {}
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
            agent = _Agent(user.id, name, role, locale, teams)
            self.agents.append(agent)
            by_name[name] = agent
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
        for key, name in _CHANNELS:
            channel, _secrets = await channels.do_create(
                session,
                workspace_id=workspace.id,
                type="api",
                name=name,
                provider=None,
                config={},
                actor=admin,
            )
            channel.created_at = self.setup_at
            self.channels[key] = _Channel(key, channel.id)
        await session.flush()
        # The services stamp their events "now"; the story starts before the 60 days.
        pending = [o for o in (*session.identity_map.values(), *session.new)]
        setup_events = sorted((o for o in pending if isinstance(o, Event)), key=lambda e: e.id or 0)
        for i, row in enumerate(setup_events):
            row.created_at = self.setup_at + timedelta(seconds=i)

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
        person = _Person(
            name=name,
            first=first,
            region=region,
            lang=lang,
            locale=locale,
            timezone=rng.choice(_TIMEZONES[region]),
            phone=self.phone(region),
            email=email,
            app_id=f"app-{100_000 + index * 7 + rng.randint(0, 6)}",
            web_id=f"web-{rng.getrandbits(48):012x}",
            company=company,
            attributes={
                "tier": "gold" if rng.random() < 0.1 else "standard",
                "customer_since": rng.randint(2016, self.now.year),
            },
        )
        if company is not None:
            company.contacts.append(person)
        return person

    def see(self, person: _Person, channel: _Channel, at: datetime) -> None:
        """What resolving a sender does: create the contact, add identities not yet known."""
        if person.id is None:
            person.id = self.uuid_at(at)
            person.created_at = at
            self.event(at, "contact.created", SYSTEM, channel=channel, contact_id=person.id)
        claims = [
            ("api", str(channel.id), person.external_id(channel)),
            ("phone", "", person.phone),
        ]
        if person.email:
            claims.append(("email", "", person.email))
        for kind, scope, value in claims:
            if (kind, scope) in person.known:
                continue
            person.known.add((kind, scope))
            self.identity(person, kind, scope, value, at, verified=True)
            self.event(
                at,
                "contact.identity_added",
                SYSTEM,
                channel=channel,
                contact_id=person.id,
                data={"kind": kind, "verified": True},
            )

    def identity(
        self, person: _Person, kind: str, scope: str, value: str, at: datetime, *, verified: bool
    ) -> None:
        """A row of contact_identities."""
        self.rows[ContactIdentity].append(
            {
                "id": self.uuid_at(at),
                "workspace_id": self.workspace_id,
                "contact_id": person.cid,
                "kind": kind,
                "scope": scope,
                "value": value,
                "verified": verified,
                "created_at": at,
            }
        )

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
                person.known.add((kind, ""))
                self.identity(person, kind, "", value, at, verified=False)
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
                assert step.channel is not None
                conv = self.inbound(conv, person, step.channel, step.at, step.text)
                continue
            assert conv is not None, "a conversation starts with the customer"
            if step.kind in ("out", "bot"):
                self.reply(conv, step)
            elif step.kind in ("note", "bot_note"):
                self.note(conv, step)
            elif step.kind == "team":
                previous = conv.team
                conv.team = self.teams[step.value]
                data = {"team_id": str(conv.team), "previous_team_id": _s(previous)}
                if step.reason:
                    data["reason"] = step.reason
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

    def inbound(
        self, conv: _Conv | None, person: _Person, channel: _Channel, at: datetime, text: str
    ) -> _Conv:
        """A customer's message, as the inbound flow stores and records it."""
        self.see(person, channel, at)
        if conv is None:
            conv = _Conv(self.uuid_at(at), person, at, at, channel)
            self.event(at, "conversation.created", SYSTEM, channel=channel, conv=conv)
        else:
            if conv.status != "open":
                self.status(conv, at, "open", SYSTEM, reason="customer_replied")
            if conv.last_channel.id != channel.id:
                self.event(
                    at,
                    "conversation.channel_switched",
                    Actor.contact(person.cid),
                    channel=channel,
                    conv=conv,
                    data={"from_channel_id": str(conv.last_channel.id)},
                )
        conv.last_channel = channel
        self.counter += 1
        provider_id = f"{channel.key}-{self.counter:07d}-{self.id_rng.getrandbits(32):08x}"
        sent_at = at - timedelta(seconds=self.rng.randint(1, 8))
        sender = Sender(
            external_id=person.external_id(channel),
            name=person.name,
            phone=person.phone,
            email=person.email,
            phone_verified=True,
            email_verified=bool(person.email),
        )
        item = InboundItem(
            provider_event_id=provider_id,
            kind="message",
            sender=sender,
            text=text,
            sent_at=sent_at.isoformat(),
        )
        body = {
            "id": provider_id,
            "from": {
                "id": sender.external_id,
                "name": sender.name,
                "phone": sender.phone,
                "email": sender.email,
            },
            "text": text,
            "sent_at": sent_at.isoformat(),
        }
        inbound_id, message_id = self.uuid_at(at), self.uuid_at(at)
        self.rows[InboundEvent].append(
            {
                "id": inbound_id,
                "workspace_id": self.workspace_id,
                "channel_id": channel.id,
                "provider_event_id": provider_id,
                "message_id": message_id,
                "raw_body": json.dumps(body, ensure_ascii=False).encode(),
                "item": item.to_json(),
                "status": "processed",
                "error": None,
                "received_at": at,
                "processed_at": at + timedelta(milliseconds=self.rng.randint(40, 400)),
            }
        )
        self.message(
            conv,
            message_id,
            at,
            kind="inbound",
            sender_type="contact",
            sender_id=person.cid,
            channel=channel,
            status="received",
            text=text,
            provider_message_id=provider_id,
            inbound_event_id=inbound_id,
            sent_at=sent_at,
        )
        conv.last_activity_at = max(conv.last_activity_at, at)
        person.last_activity_at = at
        self.event(
            at,
            "message.received",
            Actor.contact(person.cid),
            channel=channel,
            conv=conv,
            message_id=message_id,
            data={
                "channel_type": "api",
                "provider_message_id": provider_id,
                "attachments": 0,
                "sent_at": sent_at.isoformat(),
            },
        )
        return conv

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
        provider_message_id: str | None = None,
        inbound_event_id: uuid.UUID | None = None,
        sent_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """A row of messages."""
        self.rows[Message].append(
            {
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
                "attachments": [],
                "inbound_event_id": inbound_event_id,
                "sent_at": sent_at,
                "created_at": at,
                "updated_at": updated_at or at,
            }
        )

    def reply(self, conv: _Conv, step: _Step) -> None:
        """An agent's (or the bot's) reply: queued, sent, usually delivered."""
        channel = step.channel or conv.last_channel
        bot = step.kind == "bot"
        actor = BOT if bot else step.actor
        message_id = self.uuid_at(step.at)
        sent = step.at + timedelta(seconds=self.rng.uniform(0.3, 3))
        delivered = sent + timedelta(seconds=self.rng.uniform(1, 25))
        status = "delivered" if step.delivered else "sent"
        self.message(
            conv,
            message_id,
            step.at,
            kind="bot" if bot else "outbound",
            sender_type="bot" if bot else "user",
            sender_id=None if bot or step.agent is None else step.agent.id,
            channel=channel,
            status=status,
            text=step.text,
            provider_message_id=str(message_id),
            updated_at=delivered if step.delivered else sent,
        )
        conv.last_activity_at = max(conv.last_activity_at, step.at)
        common: dict[str, Any] = {"channel": channel, "conv": conv, "message_id": message_id}
        self.event(step.at, "message.queued", actor, data={"channel_type": "api"}, **common)
        self.event(sent, "message.sent", SYSTEM, data={"status": "sent"}, **common)
        if step.delivered:
            self.event(
                delivered, "message.delivered", SYSTEM, data={"status": "delivered"}, **common
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
        channel = self.channels[self.weighted(_CHANNEL_MIX[person.region])]
        inbound_at = [i for i, (kind, _) in enumerate(script) if kind == "in"]
        switch_at: int | None = None
        if len(inbound_at) >= 2 and rng.random() < 0.2:
            switch_at = rng.choice(inbound_at[1:])
        switch_to = self.channels[
            rng.choice([k for k in _CHANNEL_MIX[person.region] if k != channel.key])
        ]
        steps: list[_Step] = []
        current = channel
        for i, ((kind, text), offset) in enumerate(zip(script, offsets, strict=True)):
            at = start + offset
            body = text.format_map(ctx)
            if kind == "in":
                if i == switch_at:
                    current = switch_to
                    body = _SWITCH_PREFIX[(person.lang, current.key)] + body
                steps.append(_Step(at, "in", body, channel=current))
            elif kind == "out":
                delivered = rng.random() < 0.9
                steps.append(
                    _Step(at, "out", body, agent=agent, actor=agent.actor, delivered=delivered)
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
            web_id="web-3f9a1c22b710",
            company=None,
            attributes={
                "tier": "gold",
                "customer_since": 2019,
                "last_booking": "R-48213",
                "vehicle": "Seat León · 1234 LMN",
            },
        )
        self.used_emails.add("marta.jimenez.ruiz@gmail.com")
        sms, whatsapp = self.channels["sms"], self.channels["whatsapp"]
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
            "📞 Llamada saliente a +34 611 22 33 44 · 4 min 12 s. Transcripción:\n"
            "Ana: Hola Marta, soy Ana, de Asistencia en carretera. ¿Están todos bien?\n"
            "Marta: Sí, estamos bien, solo un poco asustados. El coche echaba humo.\n"
            "Ana: No lo arranquen más. La grúa sale ahora y un taxi les llevará a Málaga "
            "Aeropuerto, donde tendrán otro coche sin coste.\n"
            "Marta: Perfecto, muchas gracias.\n"
            "Grúa solicitada, ref. GR-20931; taxi para tres personas."
        )
        steps = [
            _Step(
                t(0),
                "in",
                "Hola, el coche de alquiler se ha averiado en la autovía. Sale humo del capó y "
                "no arranca. Reserva R-48213.",
                channel=sms,
            ),
            _Step(
                t(0.1),
                "bot",
                "Siento lo ocurrido, Marta. ¿Están en un lugar seguro? Indíquenos dónde se "
                "encuentran: carretera y punto kilométrico, o el pueblo más cercano.",
            ),
            _Step(
                t(2),
                "in",
                "Sí, estamos en el arcén. A-7, km 1036, dirección Málaga, a la altura de Marbella.",
                channel=sms,
            ),
            _Step(
                t(2.1),
                "bot",
                "Gracias. Le paso con nuestro equipo de Asistencia en carretera, que ya tiene "
                "todos los datos. No hace falta que los repita.",
            ),
            _Step(t(2.15), "bot_note", summary),
            _Step(t(2.2), "team", value=ROADSIDE, actor=BOT, reason="bot_handoff"),
            _Step(t(2.2), "priority", value="urgent", actor=BOT),
            _Step(t(2.2), "label", value="avería", actor=BOT),
            _Step(t(2.2), "label", value="vip", actor=BOT),
            _Step(t(3), "assign", agent=ana, actor=ana.actor),
            _Step(t(10), "note", call, agent=ana, actor=ana.actor),
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
            _Step(t(58), "in", "Ya ha llegado la grúa. ¡Gracias!", channel=sms),
            _Step(
                t(108),
                "out",
                "Su coche de sustitución (Toyota Corolla, 5678 KJH) les espera en Málaga "
                "Aeropuerto, mostrador 3. Sin coste adicional.",
                agent=ana,
                actor=ana.actor,
            ),
            _Step(t(158), "in", "Ya tenemos el coche nuevo. Muy buena atención.", channel=sms),
            _Step(
                t(1038),
                "out",
                "Ruta Rent a Car: ¿qué tal le atendimos ayer? Responda con un número del 1 "
                "(mal) al 5 (excelente).",
                agent=ana,
                actor=ana.actor,
            ),
            _Step(t(1050), "in", "5", channel=sms),
            _Step(t(1051), "out", "¡Gracias, Marta! Buen viaje.", agent=ana, actor=ana.actor),
            _Step(t(1052), "label", value="csat-5", agent=ana, actor=ana.actor),
            _Step(t(1052), "status", value="resolved", agent=ana, actor=ana.actor),
            # Six days later, from the same number, on WhatsApp: the same thread reopens.
            _Step(
                t(-100, days=6),
                "in",
                "Hola, soy Marta (la de la avería en Marbella). Me ha llegado un cargo de 180 € "
                "por la grúa, ¿es correcto?",
                channel=whatsapp,
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
                channel=whatsapp,
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
        for model in (
            Company,
            Contact,
            ContactIdentity,
            Deal,
            Conversation,
            ConversationLabel,
            InboundEvent,
            Message,
        ):
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
