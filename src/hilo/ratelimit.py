"""In-process rate limits for public endpoints (the web chat widget, web forms).

A token bucket per key (an IP address, a visitor): ``burst`` requests at once, refilled at
``per_minute``. Each process keeps its own buckets, so N API processes allow up to N times
the rate; that bounds abuse well enough without a shared store on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

from hilo.errors import TooManyRequests

# Buckets kept at most; the least recently used go first (a full bucket is the default).
MAX_KEYS = 50_000


class RateLimiter:
    """Token buckets keyed by anything hashable."""

    def __init__(self, per_minute: float, *, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute)))
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, *, cost: float = 1.0, at: float | None = None) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket; whether there were enough."""
        moment = time.monotonic() if at is None else at
        tokens, last = self._buckets.pop(key, (self.burst, moment))
        tokens = min(self.burst, tokens + (moment - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, moment)
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return allowed

    def check(self, key: Hashable, *, cost: float = 1.0) -> None:
        """Like :meth:`allow`, raising :class:`TooManyRequests` when refused."""
        if not self.allow(key, cost=cost):
            raise TooManyRequests()
