"""Durable jobs: rows written with the change that caused them, run by workers with retries."""
