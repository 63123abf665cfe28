"""How each distinct subscription is matched against a collection's rows (``ddp_match``).

One row per subscription row and collection it publishes: the hash of its template and
the values of that template's parameters, as text (``t``) and, for integers, as numbers
(``i``), and the subscription's server (so a writer can tell a live collection from one
only dead servers subscribe to, by index), so that a writer's one statement per collection can find the subscriptions a
row belongs to by index (see ddp/bus/matching.py). ``template`` is empty for a
subscription matched one by one.
"""

from django.db import migrations

CREATE = """
CREATE TABLE ddp_match (
    id bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES ddp_subscription (id) ON DELETE CASCADE,
    server_id varchar(32) NOT NULL,
    key varchar(40) NOT NULL,
    collection varchar(255) NOT NULL,
    template varchar(40) NOT NULL,
    t text[] NOT NULL,
    i bigint[] NOT NULL
);
CREATE INDEX ddp_match_subscription ON ddp_match (subscription_id);
CREATE INDEX ddp_match_server ON ddp_match (server_id, collection);
CREATE INDEX ddp_match_text ON ddp_match (collection, template, (t[1]));
CREATE INDEX ddp_match_int ON ddp_match (collection, template, (i[1]));
CREATE INDEX ddp_subscription_key ON ddp_subscription (key);
"""

DROP = "DROP TABLE ddp_match; DROP INDEX ddp_subscription_key;"


class Migration(migrations.Migration):
    dependencies = [("ddp", "0001_initial")]
    operations = [migrations.RunSQL(CREATE, DROP)]
