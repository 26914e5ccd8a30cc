"""The tamper-evident seal of the event log: hash chain, signed checkpoints, verification."""

from hilo.audit.service import (
    VerifyReport,
    event_digest,
    redact_events,
    seal_pending,
    verify,
)
from hilo.audit.tasks import Sealer, wake_on_events

__all__ = [
    "Sealer",
    "VerifyReport",
    "event_digest",
    "redact_events",
    "seal_pending",
    "verify",
    "wake_on_events",
]
