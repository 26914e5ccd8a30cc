"""Live updates: committed events streamed to browsers over WebSocket or Server-Sent Events."""
