"""Baseline endpoints of the benchmark suite (``bench/``), on only with HILO_BENCH_ENDPOINTS."""
