"""Database capture: changes read from PostgreSQL's logical replication stream."""
