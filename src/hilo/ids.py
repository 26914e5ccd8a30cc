"""Time-ordered identifiers (UUIDv7) so primary-key indexes grow at the end."""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> uuid.UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, then randomness."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)
