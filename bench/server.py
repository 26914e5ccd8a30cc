"""A real ``hilo serve`` process on loopback, and its resident memory while it runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process now, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples a process's resident memory every 50 ms; ``peak()`` since the last ``reset()``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, rss_mb(self.pid))

    def reset(self) -> None:
        self._peak = rss_mb(self.pid)

    def peak(self) -> float:
        return max(self._peak, rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class HiloServer:
    """``hilo serve`` on a working copy, with the benchmark's baseline endpoints enabled."""

    db_url: str
    data_dir: Path
    secret_key: str
    log_path: Path
    port: int = field(default_factory=free_port)
    # 0: the embedded default, workers inside ``hilo serve``; n: the API process without
    # workers, and n ``hilo worker`` processes beside it (the production layout).
    workers: int = 0
    proc: subprocess.Popen[bytes] | None = None
    sampler: RssSampler | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_samplers: list[RssSampler] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "HILO_DATABASE_URL": self.db_url,
            "HILO_DATA_DIR": str(self.data_dir),
            "HILO_SECRET_KEY": self.secret_key,
            "HILO_PUBLIC_URL": self.base_url,
            "HILO_BENCH_ENDPOINTS": "1",
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hilo.cli", "serve", "--port", str(self.port), "--no-migrate"],
            env={**env, "HILO_RUN_WORKERS": "false"} if self.workers else env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(self.workers):
            worker = subprocess.Popen(
                [sys.executable, "-m", "hilo.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.worker_procs.append(worker)
            self.worker_samplers.append(RssSampler(worker.pid))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hilo serve exited; see {self.log_path}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    self.sampler = RssSampler(self.proc.pid)
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"hilo serve did not start; see {self.log_path}")

    @property
    def pids(self) -> list[int]:
        """The API process and its worker processes."""
        return [p.pid for p in (self.proc, *self.worker_procs) if p is not None]

    def stop(self) -> None:
        for sampler in (self.sampler, *self.worker_samplers):
            if sampler is not None:
                sampler.stop()
        for proc in (self.proc, *self.worker_procs):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def peak_rss(self) -> float:
        """The largest resident memory of any one of its processes."""
        samplers = [s for s in (self.sampler, *self.worker_samplers) if s is not None]
        return max((s.peak() for s in samplers), default=0.0)

    def reset_rss(self) -> None:
        for sampler in (self.sampler, *self.worker_samplers):
            if sampler is not None:
                sampler.reset()
