"""The benchmark run: ingest, agent reads and growth, on SQLite and PostgreSQL.

Per backend: the kept data set is generated (or resumed), copied for this run, and served
by a real ``hilo serve`` process on loopback with the baseline endpoints on. The load
generator, the live-stream watcher and the SQL baseline each run in a process of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import db, ingest, reads
from bench.datasets import Dataset
from bench.loadgen import Read
from bench.profile import Profiler
from bench.server import HiloServer
from bench.sizes import Size

Log = Callable[[str], None]


@dataclass
class Options:
    """What one run measures, and how hard."""

    mode: str
    backends: list[str]
    size: Size
    seed: int
    data_dir: Path
    pg_url: str
    out_dir: Path
    ingest_requests: int
    warmup_requests: int
    read_seconds: float
    background_rate: float
    growth_sizes: list[Size] = field(default_factory=list)
    concurrency: int = 64
    readers: int = 8
    keep: bool = False
    profile: bool = False
    workers: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(server: HiloServer) -> float:
    """CPU time of the API process and its worker processes."""
    return sum(cpu_seconds(pid) for pid in server.pids)


def machine() -> dict[str, Any]:
    """The machine the figures come from, and how busy it was."""
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        total_kb = int(fh.readline().split()[1])
    import sqlite3

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class LoadGen:
    """Runs ``bench.loadgen`` in its own process with a pickled plan."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.counter = 0

    def start(self, mode: str, plan: Any, **options: Any) -> tuple[subprocess.Popen[bytes], Path]:
        self.counter += 1
        plan_path = self.work / f"plan-{self.counter}-{mode}.pkl"
        out = self.work / f"out-{self.counter}-{mode}.json"
        plan_path.write_bytes(pickle.dumps(plan))
        args = [sys.executable, "-m", "bench.loadgen", mode, "--plan", str(plan_path)]
        args += ["--out", str(out)]
        for key, value in options.items():
            args += [f"--{key}", str(value)]
        proc = subprocess.Popen(args, cwd=str(Path(__file__).resolve().parent.parent))
        return proc, out

    @staticmethod
    def result(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
        if proc.wait() != 0:
            raise RuntimeError(f"load generator failed ({proc.args!r})")
        data: dict[str, Any] = json.loads(out.read_text())
        return data

    def run(self, mode: str, plan: Any, **options: Any) -> dict[str, Any]:
        proc, out = self.start(mode, plan, **options)
        return self.result(proc, out)


def create_token(url: str, secret_key: str) -> str:
    """An admin token of the data set's workspace, written straight to the database."""
    os.environ["HILO_SECRET_KEY"] = secret_key
    from hilo.auth import service
    from hilo.db import Database
    from hilo.events import Actor
    from hilo.settings import get_settings

    get_settings.cache_clear()

    async def go() -> str:
        database = Database(url, pool_size=1)
        try:
            async with database.transaction() as session:
                workspace = await service.do_get_or_create_workspace(session, "bench")
                return await service.do_create_token(
                    session, workspace_id=workspace.id, role="admin", actor=Actor("cli")
                )
        finally:
            await database.dispose()

    return asyncio.run(go())


def existing_phones(url: str, limit: int = 20_000) -> list[str]:
    """Phone numbers of customers already in the data set (they come back)."""
    rows = db.fetch(url, "SELECT value FROM contact_identities WHERE kind = 'phone' LIMIT ?", limit)
    return [str(r[0]) for r in rows]


def wait_processed(url: str, *, timeout: float, log: Log) -> float:
    """Wait until no inbound delivery waits for processing; seconds waited."""
    started = time.monotonic()
    last_note = started
    while True:
        pending = ingest.pending_jobs(url)
        if pending == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            log(f"  {pending} deliveries still unprocessed after {timeout:.0f} s")
            return time.monotonic() - started
        if time.monotonic() - last_note > 15:
            log(f"  waiting for processing: {pending} deliveries left")
            last_note = time.monotonic()
        time.sleep(0.25)


def visible_times(path: Path) -> dict[str, float]:
    """When each provider id first showed on the live stream."""
    seen: dict[str, float] = {}
    if not path.exists():
        return seen
    for line in path.read_text().splitlines():
        provider_id, _sep, when = line.partition("\t")
        if provider_id and when and provider_id not in seen:
            seen[provider_id] = float(when)
    return seen


def visible_latency(ledger: ingest.Ledger, seen: dict[str, float]) -> dict[str, float]:
    """Request → visible on the live stream, per acknowledged provider id (first send)."""
    return ingest.latency_summary(
        [seen[pid] - ledger.first_sent[pid] for pid in ledger.acked if pid in seen]
    )


class BackendRun:
    """One backend's benchmark on one data set."""

    def __init__(self, options: Options, backend: str, log: Log) -> None:
        self.options = options
        self.backend = backend
        self.log = log
        self.dataset = Dataset(
            backend, options.size, options.seed, options.data_dir, options.pg_url
        )
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.run_id = f"{backend}-{options.size.key}-{stamp}-{os.getpid()}"
        self.work = options.data_dir / "runs" / f"{self.run_id}-work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.loadgen = LoadGen(self.work)
        self.steady = ingest.Ledger()

    def ensure_dataset(self) -> dict[str, Any]:
        report = self.dataset.ensure(log=lambda line: self.log(f"  {line}"))
        counts = db.fetch(
            self.dataset.url,
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM contacts), "
            "(SELECT COUNT(*) FROM conversations)",
        )[0]
        return {
            "name": self.dataset.name,
            "messages": int(counts[0]),
            "contacts": int(counts[1]),
            "conversations": int(counts[2]),
            "generation": report.as_dict(),
        }

    def start_server(self, url: str) -> HiloServer:
        server = HiloServer(
            url,
            data_dir=self.work,
            secret_key=self.dataset.secret_key,
            log_path=self.work / "server.log",
            workers=self.options.workers,
        )
        server.start()
        return server

    def run(self) -> dict[str, Any]:
        options = self.options
        self.log(f"[{self.backend}] data set {self.dataset.name}")
        result: dict[str, Any] = {"dataset": self.ensure_dataset()}
        url = self.dataset.working_copy(self.run_id)
        result["durability"] = db.durability(url)
        token = create_token(url, self.dataset.secret_key)
        server = self.start_server(url)
        watcher: subprocess.Popen[bytes] | None = None
        try:
            client = httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            channels = ingest.create_channels(client)
            phones = existing_phones(url)
            watch_path = self.work / "visible.tsv"
            watch = ["watch", "--base", server.base_url, "--token", token]
            watcher = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", *watch, "--out", str(watch_path)],
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            ledger = ingest.Ledger()
            result["ingest"] = self.measure_ingest(
                server, url, channels, phones, ledger, watch_path
            )
            result["reads"] = self.measure_reads(server, url, token, channels, phones, ledger)
            self.log(f"[{self.backend}] waiting for the background deliveries to be processed")
            wait_processed(url, timeout=900, log=self.log)
            time.sleep(1.0)  # the watcher flushes every 0.2 s
            result["reads"]["background_visible_latency"] = visible_latency(
                self.steady, visible_times(watch_path)
            )
            result["verification"] = ingest.verify(url, channels.ids, ledger)
            result["server_peak_rss_mb"] = round(server.peak_rss(), 1)
            self.log(f"[{self.backend}] ledger check: {result['verification']}")
        finally:
            if watcher is not None:
                watcher.terminate()
                watcher.wait()
            server.stop()
            if not options.keep:
                self.dataset.drop_working_copy(url)
                # Plans, outputs and the server's log; kept with --keep for a closer look.
                shutil.rmtree(self.work, ignore_errors=True)
        return result

    # -- ingest -------------------------------------------------------------------------------

    def _post(
        self, server: HiloServer, raw: list[bytes], *, rate: float | None = None
    ) -> tuple[dict[str, Any], dict[str, float]]:
        server.reset_rss()
        assert server.proc is not None
        cpu_before = server_cpu(server)
        started = time.time()
        options: dict[str, Any] = {"base": server.base_url}
        options["concurrency"] = self.options.concurrency
        if rate:
            options["rate"] = rate
        result = self.loadgen.run("post", raw, **options)
        resources = {
            "server_peak_rss_mb": round(server.peak_rss(), 1),
            "server_cpu_s": round(server_cpu(server) - cpu_before, 2),
            "wall_s": round(time.time() - started, 2),
        }
        return result, resources

    def measure_ingest(
        self,
        server: HiloServer,
        url: str,
        channels: ingest.IngestChannels,
        phones: list[str],
        ledger: ingest.Ledger,
        watch_path: Path,
    ) -> dict[str, Any]:
        options = self.options
        host = ingest.host_of(server.base_url)
        factory = ingest.DeliveryFactory(
            channels, server.base_url, phones, seed=options.seed, tag="w"
        )
        warmup = factory.build(options.warmup_requests)
        self.log(f"[{self.backend}] warm-up: {len(warmup.items)} deliveries")
        warm_result, _resources = self._post(server, warmup.raw(host, "/webhooks"))
        ledger.add(warmup, warm_result)
        self.loadgen.run("post", warmup.raw(host, "/bench/parse"), base=server.base_url)
        self.loadgen.run("post", warmup.raw(host, "/bench/store"), base=server.base_url)
        wait_processed(url, timeout=600, log=self.log)

        factory = ingest.DeliveryFactory(
            channels, server.base_url, phones, seed=options.seed, tag="m"
        )
        deliveries = factory.build(options.ingest_requests)
        self.log(
            f"[{self.backend}] ingest: {len(deliveries.items)} signed deliveries "
            f"({deliveries.retries} redeliveries) over {options.concurrency} connections"
        )
        assert server.proc is not None
        cpu_before = server_cpu(server)
        profiler = Profiler(server.proc.pid, self.work / "profile.txt") if options.profile else None
        result, resources = self._post(server, deliveries.raw(host, "/webhooks"))
        ledger.add(deliveries, result)
        phase_ledger = ingest.Ledger()
        phase_ledger.add(deliveries, result)
        drained = wait_processed(url, timeout=1800, log=self.log)
        profile = profiler.stop() if profiler else None
        resources["server_peak_rss_mb"] = round(server.peak_rss(), 1)
        resources["server_cpu_s"] = round(server_cpu(server) - cpu_before, 2)
        hilo = ingest.phase_summary(deliveries, result)
        first = min(result["sent"])
        processed = [t for t in ingest.processed_times(url, channels.ids) if t >= first]
        unique = len(phase_ledger.acked)
        persisted_s = (max(processed) - first) if processed else 0.0
        time.sleep(1.0)  # the watcher flushes every 0.2 s
        seen = visible_times(watch_path)
        hilo.update(
            {
                "unique_messages": unique,
                "persisted_per_s": round(unique / persisted_s, 1) if persisted_s else 0.0,
                "persisted_seconds": round(persisted_s, 2),
                "drain_after_last_ack_s": round(drained, 2),
                "visible_latency": visible_latency(phase_ledger, seen),
                "visible_seen": sum(1 for pid in phase_ledger.acked if pid in seen),
                "server_cpu_ms_per_message": round(
                    1000 * resources["server_cpu_s"] / max(unique, 1), 2
                ),
                **resources,
            }
        )
        self.log(
            f"[{self.backend}] hilo: {hilo['acks_per_s']} acks/s, "
            f"{hilo['persisted_per_s']} persisted msgs/s, ack p99 "
            f"{hilo['ack_latency']['p99_ms']} ms, visible p99 "
            f"{hilo['visible_latency']['p99_ms']} ms"
        )
        if profile is not None:
            hilo["profile"] = profile
        phases: dict[str, Any] = {"hilo": hilo}
        for name, prefix in (("parse", "/bench/parse"), ("store", "/bench/store")):
            base_result, base_resources = self._post(server, deliveries.raw(host, prefix))
            summary = ingest.phase_summary(deliveries, base_result)
            summary.update(base_resources)
            phases[name] = summary
            self.log(f"[{self.backend}] baseline {name}: {summary['acks_per_s']} acks/s")
        phases["ratios"] = {
            "persisted_vs_parse": _ratio(hilo["persisted_per_s"], phases["parse"]["acks_per_s"]),
            "persisted_vs_store": _ratio(hilo["persisted_per_s"], phases["store"]["acks_per_s"]),
            "acks_vs_parse": _ratio(hilo["acks_per_s"], phases["parse"]["acks_per_s"]),
            "acks_vs_store": _ratio(hilo["acks_per_s"], phases["store"]["acks_per_s"]),
        }
        return phases

    # -- reads ----------------------------------------------------------------------------------

    def measure_reads(
        self,
        server: HiloServer,
        url: str,
        token: str,
        channels: ingest.IngestChannels,
        phones: list[str],
        ledger: ingest.Ledger,
    ) -> dict[str, Any]:
        options = self.options
        probes = reads.load_probes(url, seed=options.seed)
        plan = reads.plan_reads(probes)
        self.log(f"[{self.backend}] reads: {len(plan)} distinct requests; capturing their SQL")
        sql_plan = reads.capture_sql(url, token, plan)
        plans = reads.explain(url, sql_plan)
        host = ingest.host_of(server.base_url)
        rate = options.background_rate
        seconds = options.read_seconds

        def background(tag: str) -> tuple[ingest.Deliveries, subprocess.Popen[bytes], Path]:
            factory = ingest.DeliveryFactory(
                channels, server.base_url, phones, seed=options.seed, tag=tag
            )
            deliveries = factory.build(max(int(rate * (seconds + 2)), 1))
            proc, out = self.loadgen.start(
                "post",
                deliveries.raw(host, "/webhooks"),
                base=server.base_url,
                concurrency=8,
                rate=rate,
            )
            return deliveries, proc, out

        server.reset_rss()
        bg, proc, out = background("b")
        time.sleep(1.0)
        api = self.read_api(server, token, plan)
        bg_result = LoadGen.result(proc, out)
        ledger.add(bg, bg_result)
        rss = server.peak_rss()
        bg2, proc, out = background("c")
        time.sleep(1.0)
        base = self.read_database(url, sql_plan)
        ledger.add(bg2, LoadGen.result(proc, out))
        background_summary = ingest.phase_summary(bg, bg_result)
        self.steady = ingest.Ledger()
        self.steady.add(bg, bg_result)
        return {
            "readers": options.readers,
            "seconds": seconds,
            "background_rate_per_s": rate,
            "background_achieved_per_s": background_summary["acks_per_s"],
            "background_ack_latency": background_summary["ack_latency"],
            **self.compare(api, base),
            "server_peak_rss_mb": round(rss, 1),
            "plans": plans,
        }

    def read_api(self, server: HiloServer, token: str, plan: list[Read]) -> dict[str, Any]:
        """The reads through the API, from the load generator's process."""
        return self.loadgen.run(
            "get",
            plan,
            base=server.base_url,
            token=token,
            concurrency=self.options.readers,
            duration=self.options.read_seconds,
        )

    def read_database(self, url: str, sql_plan: list[tuple[str, Any]]) -> dict[str, Any]:
        """The same reads' SQL on a plain driver connection, from another process."""
        return self.loadgen.run(
            "sql",
            sql_plan,
            db=db.plain_pg(url),
            concurrency=self.options.readers,
            duration=self.options.read_seconds,
        )

    def compare(self, api: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """Latency per read through the API and on the database, and their ratio."""
        api_summary = reads.summarise(api["reads"])
        base_summary = reads.summarise(base["reads"])
        for label, numbers in api_summary.items():
            self.log(
                f"[{self.backend}] {self.options.size.label} {label}: API p50 "
                f"{numbers['p50_ms']} p99 {numbers['p99_ms']} ms; database p50 "
                f"{base_summary[label]['p50_ms']} p99 {base_summary[label]['p99_ms']} ms"
            )
        return {
            "api": api_summary,
            "database": base_summary,
            "ratios": reads.ratios(api_summary, base_summary),
        }

    # -- growth -------------------------------------------------------------------------------

    def growth_point(self) -> dict[str, Any]:
        """The reads alone (no ingest) on this data set, API and database, with plans."""
        options = self.options
        self.log(f"[{self.backend}] growth at {options.size.label}: data set {self.dataset.name}")
        dataset = self.ensure_dataset()
        url = self.dataset.working_copy(self.run_id)
        token = create_token(url, self.dataset.secret_key)
        server = self.start_server(url)
        try:
            probes = reads.load_probes(url, seed=options.seed)
            plan: list[Read] = reads.plan_reads(probes)
            sql_plan = reads.capture_sql(url, token, plan)
            server.reset_rss()
            assert server.proc is not None
            cpu_before = server_cpu(server)
            api = self.read_api(server, token, plan)
            cpu = server_cpu(server) - cpu_before
            rss = server.peak_rss()
            base = self.read_database(url, sql_plan)
            plans = reads.explain(url, sql_plan)
        finally:
            server.stop()
            if not options.keep:
                self.dataset.drop_working_copy(url)
                # Plans, outputs and the server's log; kept with --keep for a closer look.
                shutil.rmtree(self.work, ignore_errors=True)
        return {
            "dataset": dataset,
            **self.compare(api, base),
            "server_peak_rss_mb": round(rss, 1),
            # Every HTTP request of the reads (a 500-message conversation is three).
            "server_cpu_ms_per_request": round(1000 * cpu / max(_requests(api), 1), 2),
            "plans": plans,
        }


def _requests(result: dict[str, Any]) -> int:
    return sum(int(pages) for _label, _seconds, _status, pages in result["reads"])


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def run_all(options: Options, command: str, log: Log = print) -> dict[str, Any]:
    """The whole suite for every backend asked for; returns the results document."""
    started = time.time()
    document: dict[str, Any] = {
        "mode": options.mode,
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "size": {"label": options.size.label, "messages": options.size.messages},
        "settings": {
            "ingest_requests": options.ingest_requests,
            "warmup_requests": options.warmup_requests,
            "concurrency": options.concurrency,
            "redelivery_share": ingest.RETRY_SHARE,
            "readers": options.readers,
            "read_seconds": options.read_seconds,
            "background_rate_per_s": options.background_rate,
            "seed": options.seed,
        },
        "backends": {},
        "growth": {},
    }
    for backend in options.backends:
        if backend == "postgres":
            document["machine"]["postgres"] = str(
                db.fetch(options.pg_url, "SELECT version()")[0][0]
            ).split(" on ")[0]
        if options.ingest_requests > 0:
            document["backends"][backend] = BackendRun(options, backend, log).run()
    for size in options.growth_sizes:
        for backend in options.backends:
            point = BackendRun(replace(options, size=size), backend, log).growth_point()
            document["growth"].setdefault(backend, {})[size.label] = point
    document["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document["seconds"] = round(time.time() - started, 1)
    return document
