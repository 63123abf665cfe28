"""The shared subscription registry's tables (see ddp/bus/registry.py).

They hold the state of running servers, not data: no model maps them, so Django's test
flush and dumpdata leave them alone, and nothing but the registry writes them.
"""

from django.db import migrations

CREATE = """
CREATE TABLE ddp_server (
    id varchar(32) PRIMARY KEY,
    host varchar(255) NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL
);
CREATE INDEX ddp_server_heartbeat ON ddp_server (heartbeat);
CREATE TABLE ddp_subscription (
    id bigserial PRIMARY KEY,
    server_id varchar(32) NOT NULL REFERENCES ddp_server (id) ON DELETE CASCADE,
    key varchar(40) NOT NULL,
    publication varchar(255) NOT NULL,
    params jsonb NOT NULL,
    user_id varchar(255),
    collections jsonb NOT NULL,
    UNIQUE (server_id, key)
);
CREATE INDEX ddp_subscription_collections ON ddp_subscription USING gin (collections);
"""

DROP = "DROP TABLE ddp_subscription; DROP TABLE ddp_server;"


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.RunSQL(CREATE, DROP)]
