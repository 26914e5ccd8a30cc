"""Files: customers' media downloaded at ingest, agents' uploads, served to the workspace."""
