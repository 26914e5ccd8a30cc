"""Channels: one adapter per channel behind one protocol, registered in ``registry``."""
