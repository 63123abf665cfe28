"""Changes read from PostgreSQL's logical replication stream (``DDP["CAPTURE"]``)."""
