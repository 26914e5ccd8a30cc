"""Hilo: one customer, one continuous conversation, across every channel."""

__version__ = "0.1.0"
