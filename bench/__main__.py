"""``python -m bench``: Hilo's benchmark suite.

    python -m bench run --quick                 # both databases, small data set, < 3 minutes
    python -m bench run                         # the record: 10M messages + growth 100k/1M/10M
    python -m bench run --backend sqlite --size 1m --growth 100k,1m
    python -m bench generate --size 10m         # only make (or finish) the data sets

Results go to bench/results/ (JSON, Markdown, plans, SVG charts); generated data sets to
../bench-data (outside the checkout), kept between runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.sizes import DEFAULT_DATA_DIR, DEFAULT_PG_URL, RESULTS_DIR, parse_size


@dataclass(frozen=True)
class Defaults:
    """How big and how long a run is unless told otherwise."""

    size: str
    ingest: int
    warmup: int
    read_seconds: float
    rate: float


QUICK = Defaults(size="quick", ingest=1_000, warmup=100, read_seconds=6.0, rate=20.0)
FULL = Defaults(size="10m", ingest=10_000, warmup=500, read_seconds=30.0, rate=20.0)
FULL_GROWTH = "100k,1m,10m"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "generate"):
        p = sub.add_parser(name)
        p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
        p.add_argument("--size", help="quick, 100k, 1m, 10m or e.g. 250k (messages)")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        p.add_argument(
            "--pg-url",
            default=os.environ.get("HILO_TEST_POSTGRES_URL", DEFAULT_PG_URL),
            help="an admin connection of the PostgreSQL server (databases are created on it)",
        )
    run = sub.choices["run"]
    run.add_argument("--quick", action="store_true", help="the small everyday run (CI)")
    run.add_argument("--growth", help="sizes for the growth curve, e.g. 100k,1m,10m ('' for none)")
    run.add_argument("--ingest-requests", type=int, help="0: only the growth curve")
    run.add_argument("--read-seconds", type=float)
    run.add_argument("--background-rate", type=float, help="webhooks/s during the reads")
    run.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    run.add_argument("--name", help="results file name (default: quick or full)")
    run.add_argument("--keep", action="store_true", help="keep the run's working copies")
    run.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the jobs in this many `hilo worker` processes beside the API (PostgreSQL)",
    )
    run.add_argument(
        "--profile", action="store_true", help="sample the server with py-spy during ingest"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.command == "generate":
        from bench.datasets import Dataset

        for label in (args.size or FULL.size).split(","):
            for backend in backends:
                dataset = Dataset(backend, parse_size(label), args.seed, args.data_dir, args.pg_url)
                print(f"[{backend}] {dataset.name}: {dataset.url}")
                print(dataset.ensure().as_dict())
        return 0
    from bench import report
    from bench.run import Options, run_all

    defaults = QUICK if args.quick else FULL
    growth = args.growth if args.growth is not None else ("" if args.quick else FULL_GROWTH)
    options = Options(
        mode=args.name or ("quick" if args.quick else "full"),
        backends=backends,
        size=parse_size(args.size or defaults.size),
        seed=args.seed,
        data_dir=args.data_dir,
        pg_url=args.pg_url,
        out_dir=args.out_dir,
        ingest_requests=defaults.ingest if args.ingest_requests is None else args.ingest_requests,
        warmup_requests=defaults.warmup,
        read_seconds=args.read_seconds or defaults.read_seconds,
        background_rate=args.background_rate or defaults.rate,
        growth_sizes=[parse_size(s) for s in growth.split(",") if s.strip()],
        keep=args.keep,
        profile=args.profile,
        workers=args.workers,
    )
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    document = run_all(options, command)
    for path in report.write(document, options.out_dir):
        print(f"wrote {path}")
    failed = [b for b, r in document["backends"].items() if not r["verification"]["ok"]]
    if failed:
        print(f"LEDGER CHECK FAILED on {', '.join(failed)}: messages lost or duplicated")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
