"""The agent workspace: server-rendered pages (Jinja2 + HTMX) over the domain services."""
