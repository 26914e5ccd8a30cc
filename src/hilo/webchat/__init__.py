"""The web chat widget's public side: visitor sessions, live sockets, long-polling, the script."""
