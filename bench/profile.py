"""Where the server's time goes during the measured ingest: py-spy (optional) over the run.

``python -m bench run --profile`` samples the ``hilo serve`` process while it acknowledges
and processes the measured deliveries, only while it holds the GIL (CPU work, not waits),
and keeps the functions of Hilo and of the libraries under it that most samples pass through.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 100  # samples per second


class Profiler:
    """py-spy recording one process until stopped; a no-op when py-spy is not installed."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        beside = Path(sys.executable).parent / "py-spy"
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe:
            options = ["--gil", "-r", str(RATE), "-f", "raw", "-o", str(out)]
            self.proc = subprocess.Popen(
                [exe, "record", "-p", str(pid), *options],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> dict[str, Any]:
        """Stop recording; the busiest functions (share of samples that pass through them)."""
        if self.proc is None:
            return {"available": False}
        seconds = time.monotonic() - self.started
        self.proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        self.proc.wait(timeout=60)
        return summarise(self.out, seconds=seconds)


# Which layer a sampled function belongs to, by the file it lives in (first match wins).
LAYERS = (
    ("database driver", ("asyncpg/", "aiosqlite/", "sqlite3/")),
    ("SQLAlchemy (ORM and Core)", ("sqlalchemy/",)),
    ("HTTP server and framework", ("uvicorn/", "starlette/", "fastapi/", "httptools", "h11/")),
    ("validation and JSON", ("pydantic", "json/")),
    ("Hilo", ("hilo/",)),
    ("asyncio and the rest", ("",)),
)


def _layer(module: str) -> str:
    for name, prefixes in LAYERS:
        if any(prefix in module for prefix in prefixes):
            return name
    return LAYERS[-1][0]


def summarise(path: Path, *, seconds: float = 0.0, top: int = 25) -> dict[str, Any]:
    """What the samples say: how busy the interpreter was, by layer, and Hilo's functions.

    ``by_layer``: where the sampled frame itself was (its own time). ``hilo``: the share of
    samples each Hilo function was on the stack for (its time with everything it called).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"available": True, "samples": 0}
    for line in path.read_text().splitlines():
        stack, _sep, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[_layer(frames[-1].partition(" (")[2])] += samples
        seen: set[str] = set()
        for frame in frames:
            name, _sep, where = frame.partition(" (")
            module = where.split(":")[0]
            if "hilo/" not in module or module.endswith("hilo/cli.py"):
                continue
            key = f"{name} ({module[module.index('hilo/') :]})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += samples
    if not total:
        return {"available": True, "samples": 0}
    return {
        "available": True,
        "samples": total,
        "interpreter_busy": round(total / (RATE * seconds), 3) if seconds else None,
        "by_layer": {name: round(n / total, 3) for name, n in own.most_common()},
        "hilo": [
            {"function": key, "share": round(n / total, 3)} for key, n in inclusive.most_common(top)
        ],
    }
