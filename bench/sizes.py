"""Data-set sizes, where generated data sets live, and how much disk they need."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Outside the checkout: the 10M data set is several gigabytes and is kept between runs.
DEFAULT_DATA_DIR = REPO.parent / "bench-data"
RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Bump when the generator's output changes: old data sets are then generated again.
GENERATOR_VERSION = 3
# Messages per contact in the named sizes (the 1M contacts / 10M messages).
MESSAGES_PER_CONTACT = 10
# Measured on the 1M data sets (with every index and full-text table), plus headroom.
BYTES_PER_MESSAGE = {"sqlite": 1_300, "postgres": 1_000}


@dataclass(frozen=True)
class Size:
    """How big a synthetic workspace is."""

    label: str
    contacts: int
    messages: int

    @property
    def key(self) -> str:
        return self.label


NAMED = {
    "quick": Size("quick", 2_000, 20_000),
    "100k": Size("100k", 10_000, 100_000),
    "1m": Size("1m", 100_000, 1_000_000),
    "10m": Size("10m", 1_000_000, 10_000_000),
}
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_size(text: str) -> Size:
    """``quick``, ``100k``, ``1m``, ``10m``, or any ``<number>[k|m]`` count of messages."""
    label = text.strip().lower()
    if label in NAMED:
        return NAMED[label]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", label)
    if not match:
        raise ValueError(f"unknown size {text!r}: use quick, 100k, 1m, 10m or e.g. 250k")
    messages = int(float(match.group(1)) * _SUFFIX[match.group(2)])
    if not 1_000 <= messages <= 10_000_000:
        raise ValueError("a data set holds between 1k and 10m messages")
    return Size(label, max(messages // MESSAGES_PER_CONTACT, 100), messages)


def dataset_name(size: Size, seed: int) -> str:
    """The name a generated data set is kept under: size, seed and generator version."""
    return f"{size.key}-s{seed}-v{GENERATOR_VERSION}"


def needed_bytes(size: Size, backend: str) -> int:
    """Disk a data set takes (estimate)."""
    return size.messages * BYTES_PER_MESSAGE[backend] + 64 * 1024 * 1024


def check_disk(path: Path, size: Size, backend: str, *, copies: int = 2) -> str:
    """Refuse to start when the disk cannot hold the data set and its working copy."""
    path.mkdir(parents=True, exist_ok=True)
    need = needed_bytes(size, backend) * copies
    free = shutil.disk_usage(path).free
    gib = 1024**3
    line = (
        f"{size.label} on {backend} needs about {need / gib:.1f} GiB "
        f"({copies} copies: the kept data set and the run's working copy); "
        f"{free / gib:.1f} GiB free at {path}"
    )
    if free < need:
        raise SystemExit(f"not enough disk: {line}")
    return line
