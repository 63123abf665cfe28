"""What one save costs the writer when N distinct subscriptions are live, against N = 1.

``python bench/distinct.py [--counts 1,100,1000,10000] [--saves 50] [--rate 20]
[--setups param,user,shared]``, from anywhere.

A writer pays for every live subscription that publishes the collection it writes to: it
must find which of them the saved row belongs to before its NOTIFY. Clients and servers
that share one subscription share that cost; *distinct* subscriptions (other parameters,
other users) do not. This bench measures how the writer's time per ``save()`` grows with
their number, for each N of ``--counts``, in three setups run side by side:

* ``param``: N clients, each subscribed to ``BooksByAuthorEmail`` with its own email, so N
  distinct subscriptions. Client 0, the affected client, follows the author of the book
  the writer saves; the others follow addresses no author has.
* ``user``: N users, made here with unusable passwords and one resume token each; each
  client logs in with its token (``login`` with ``resume``) and subscribes to ``MyShelf``,
  a ``login_required`` publication of ``ShelfItem`` (its Collection has ``user_rel =
  "owner"``): N distinct subscriptions, one per user. The writer changes the ``note`` of
  the one shelf item of user 0, the affected client's.
* ``shared``: N clients all subscribed to ``AllBooks``, one distinct subscription: the
  baseline, where N grows the servers' fan-out and not the writer's matching.

Each setup and N has one ``ddpserver`` of the example project (``testproject/``, its
embedded PostgreSQL, ``migrate`` run first) and ``bench/fanout.py``'s raw-socket clients
(one ``selectors`` loop in a child process), opened in batches of BATCH, each batch
waited for until ``ready``, so that the server's queue of logins and subscriptions stays
short. The registry's count of distinct subscriptions of the publication is printed
beside N. This process, the writer, not monkey-patched, then saves ``--saves`` times at
``--rate`` per second on a fixed schedule, each save in its own autocommit transaction as
a web worker's, and a unique value (``bench-distinct-...``) each time, for
``update_fields``: the title of the affected author's book, or user 0's shelf item's note.

Reported, per setup and N:

* ``save()`` p50 and p99, timed around the call alone, and p50 over the first N's p50;
* the statements per save (``connection.execute_wrapper`` on the writer's connection) and
  their time in this process, p50 per save, apart: the registry (its lock and where it
  stands), the matching (the multiplexed statement, or the ``EXISTS`` of the
  per-subscription path), the ``pg_notify``, and the rest;
* PostgreSQL's own time for the last multiplexed matching statement: its ``Execution
  Time`` under ``EXPLAIN (ANALYZE, FORMAT JSON)``, run inside a rolled-back transaction
  while the server is still up ("-" when no statement names it: the per-subscription path);
* the affected client's latency, p50 and p99, from the moment ``save()`` returned (the
  row committed and notified) to the receipt of the ``changed`` that carries that save's
  value. In ``shared`` each change goes to all N clients, so this includes the server's
  fan-out and the clients' process reading N messages per save; the affected client is
  the first one opened. The clock is read when the writer runs again after its COMMIT:
  on a busy machine (a writer spending 100s of ms per save, or a large fan-out on few
  CPUs) the server may deliver first, and a latency reads 0 or below.

The clients, the server, PostgreSQL and the writer share the machine's CPUs: check the
printed load average. Every wait is bounded and only 127.0.0.1 is used. The users (with
their tokens and shelf items) and the authors (with their books) the bench makes are
deleted at the end, and a killed run's at the start.
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fanout import (
    ALL_BOOKS,
    MANAGE,
    ROOT,
    ClientProcess,
    Clients,
    hello,
    live_servers,
    numbers,
    setup_django,
    stop,
)

#: The bench's authors have addresses in this domain, which cannot be anyone's real one.
DOMAIN = "distinct.invalid"
AUTHOR_EMAIL = f"author@{DOMAIN}"
#: Its users' names, its book's title and every value it saves start with this.
PREFIX = "bench-distinct-"
#: Clients opened at once, before the bench waits for each one's ``ready``.
BATCH = 200
#: How ``QuerySet.exists()`` starts: Django 5 sends the 1 as a parameter, and a ``user_rel``
#: queryset is DISTINCT.
EXISTS_QUERY = re.compile(r'SELECT (DISTINCT )?(1|%s) AS "a"')
#: What the multiplexed matching statement, and it alone, says.
MULTIPLEXED = "m.template = "
#: The statement kinds the writer's time is split into.
KINDS = ("registry", "match", "notify", "rest")
TARGETS = "save() p50 at 10,000 <= 2x N=1 and <= 5 ms; affected client p50 <= 10 ms"


# The clients' process ---------------------------------------------------------------------


class AffectedClients(Clients):
    """fanout's clients, each with its own messages after ``connect``; only the first one's
    (the affected client's) ``added`` and ``changed`` are recorded, with their fields: the
    value each save writes is unique, and tells which save a receipt is."""

    def __init__(self):
        super().__init__()
        self.plans = []
        self.opened = 0
        self.affected = None

    def plan(self, plans):
        """Give the clients opened next their messages after ``connect``, one list each."""
        self.plans = plans
        self.opened = 0
        return len(plans)

    def greeting(self, sock):
        if self.opened == 0:
            self.affected = sock
        messages = self.plans[self.opened]
        self.opened += 1
        return hello(*messages)

    def message(self, sock, message, received):
        if message.get("msg") not in ("added", "changed"):
            super().message(sock, message, received)
        elif sock is self.affected and self.recording:
            self.receipts.append((message.get("fields", {}), received))

    def close(self):
        super().close()
        self.affected = None


# The setups -------------------------------------------------------------------------------


@dataclass
class Fixtures:
    """The rows the writer saves, and the users' resume tokens (in user order)."""

    book: object
    item: object = None
    tokens: list = field(default_factory=list)


def sub(name, *params):
    """A ``sub`` message; each client has one subscription, so its id is always 1."""
    return {"msg": "sub", "id": "1", "name": name, "params": list(params)}


def param_plans(count, fixtures):
    """Client 0 follows the affected author; every other client an address of its own."""
    emails = [AUTHOR_EMAIL, *(f"reader-{n}@{DOMAIN}" for n in range(1, count))]
    return [[sub("BooksByAuthorEmail", email)] for email in emails]


def user_plans(count, fixtures):
    """Client n logs in as user n by resume token, then subscribes to its own shelf."""
    login = {"msg": "method", "method": "login", "id": "l"}
    return [
        [{**login, "params": [{"resume": token}]}, sub("MyShelf")]
        for token in fixtures.tokens[:count]
    ]


def shared_plans(count, fixtures):
    """Every client on AllBooks: N clients, one distinct subscription."""
    return [[ALL_BOOKS]] * count


@dataclass
class Setup:
    """One way N clients subscribe, and the row whose saves the affected client follows."""

    publication: str
    plans: object  # (count, fixtures) -> each client's messages after connect
    target: str  # the Fixtures attribute the writer saves
    field: str  # the field each save changes


SETUPS = {
    "param": Setup("BooksByAuthorEmail", param_plans, "book", "title"),
    "user": Setup("MyShelf", user_plans, "item", "note"),
    "shared": Setup("AllBooks", shared_plans, "book", "title"),
}


def clean():
    """Delete what the bench makes: its users (their tokens and shelf items go with them),
    then its authors (and their books). Also run first, for a killed run's leftovers."""
    from django.contrib.auth import get_user_model

    from bookstore.models import Author

    user_model = get_user_model()
    user_model._default_manager.filter(
        **{f"{user_model.USERNAME_FIELD}__startswith": PREFIX}
    ).delete()
    Author.objects.filter(email__endswith=f"@{DOMAIN}").delete()


def make_fixtures(users):
    """The affected author and book; with ``users``, that many users, a token each, and a
    shelf item for user 0. Tokens are minted as a login would, in one transaction."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from bookstore.models import Author, Book, ShelfItem
    from ddp.accounts.tokens import mint

    author = Author.objects.create(name=PREFIX, email=AUTHOR_EMAIL)
    fixtures = Fixtures(Book.objects.create(title=PREFIX, author=author))
    if not users:
        return fixtures
    user_model = get_user_model()
    name = user_model.USERNAME_FIELD
    user_model._default_manager.bulk_create(
        user_model(**{name: f"{PREFIX}{n:05d}"}, password=make_password(None)) for n in range(users)
    )
    made = user_model._default_manager.filter(**{f"{name}__startswith": PREFIX}).order_by(name)
    with transaction.atomic():
        fixtures.tokens = [mint(user)[0] for user in made]
    fixtures.item = ShelfItem.objects.create(owner=made[0], book=fixtures.book)
    return fixtures


# The writer -------------------------------------------------------------------------------


def kind(sql):
    """Which part of a save's work a statement is: the matching (the multiplexed
    statement, or the ``EXISTS`` Django's ``.exists()`` sends per subscription), the
    registry (its lock, where it stands, rows new to this writer), the NOTIFY, or the
    rest (the write itself, transaction control, savepoints)."""
    if MULTIPLEXED in sql or EXISTS_QUERY.match(sql):
        return "match"
    if "ddp_match" in sql or "ddp_subscription" in sql or "pg_advisory" in sql:
        return "registry"
    if "pg_notify" in sql:
        return "notify"
    return "rest"


class Statements:
    """An ``execute_wrapper``: counts and times (client side) the statements of the save
    under way by kind, and keeps the last multiplexed one to EXPLAIN later."""

    def __init__(self):
        self.last_match = None
        self.reset()

    def reset(self):
        self.count = 0
        self.seconds = dict.fromkeys(KINDS, 0.0)

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        result = execute(sql, params, many, context)
        self.seconds[kind(sql)] += time.perf_counter() - start
        self.count += 1
        if MULTIPLEXED in sql:
            self.last_match = (sql, params)
        return result


def write(clients, instance, name, saves, rate, mark):
    """Save ``instance``'s field ``name`` ``saves`` times at ``rate`` per second, a new
    value each time; return each save's (seconds, statements, seconds by kind), the
    affected client's latencies in ms, and the last matching statement."""
    from django.db import connection

    statements = Statements()
    per_save, commits = [], {}
    clients.send("record", saves)
    start = time.perf_counter()
    with connection.execute_wrapper(statements):
        for n in range(saves):
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
            value = f"{mark}-{n:04d}"
            setattr(instance, name, value)
            statements.reset()
            before = time.perf_counter()
            instance.save(update_fields=[name])
            after = time.perf_counter()
            commits[value] = time.time()
            per_save.append((after - before, statements.count, dict(statements.seconds)))
    receipts = clients.answer()
    latencies = [
        (received - commits[fields[name]]) * 1000
        for fields, received in receipts
        if fields.get(name) in commits
    ]
    return per_save, latencies, statements.last_match


class _Rollback(Exception):
    """Undoes what EXPLAIN ANALYZE did: it runs the statement for real."""


def execution_ms(statement):
    """PostgreSQL's own time for ``statement`` (sql, params), without the round trip and
    this process's share: ``Execution Time`` of EXPLAIN ANALYZE. None without a statement."""
    from django.db import connection, transaction

    if statement is None:
        return None
    sql, params = statement
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
            raise _Rollback(cursor.fetchone()[0])
    except _Rollback as rollback:
        plan = rollback.args[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Execution Time"]


def distinct_subscriptions(publication):
    """Distinct subscriptions of ``publication`` that live servers registered: what the
    writer matches a saved row against."""
    from django.db import connection

    from ddp.conf import ddp_settings

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT s.key) FROM ddp_subscription s"
            " JOIN ddp_server v ON v.id = s.server_id"
            " WHERE v.heartbeat > now() - make_interval(secs => %s) AND s.publication = %s",
            [ddp_settings.SERVER_TIMEOUT, publication],
        )
        return cursor.fetchone()[0]


def subscribe(clients, port, plans):
    """Open the clients BATCH at a time, each batch waited for until ``ready``."""
    clients.ask("plan", plans)
    for start in range(0, len(plans), BATCH):
        batch = min(BATCH, len(plans) - start)
        ready = clients.ask("open", [port], batch, True)
        if ready < start + batch:
            raise RuntimeError(f"{ready} of {start + batch} subscriptions ready")


def run(clients, setup, count, fixtures, args):
    """One setup with ``count`` clients on a server of its own; returns its figures."""
    from ddp.testing import ServerProcess

    server = ServerProcess(
        command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"], cwd=ROOT
    ).start()
    try:
        subscribe(clients, server.port, setup.plans(count, fixtures))
        subscriptions = distinct_subscriptions(setup.publication)
        instance = getattr(fixtures, setup.target)
        mark = f"{PREFIX}{setup.publication}-{count}"
        per_save, latencies, last_match = write(
            clients, instance, setup.field, args.saves, args.rate, mark
        )
        # While the server is up: the statement reads its registry rows.
        explain = execution_ms(last_match)
    finally:
        stop(server)
        # After the server, which closes every client itself and leaves the registry.
        clients.ask("close")
    return summarize(per_save, latencies, subscriptions, explain)


def percentile(values, pct):
    """``pct``-th percentile (inclusive method), also of one value; None of none."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def summarize(per_save, latencies, subscriptions, explain):
    """The figures of one setup and N, in ms, keyed as :func:`table` reads them."""
    seconds = [entry[0] * 1000 for entry in per_save]
    figures = {
        "subs": subscriptions,
        "save_p50": percentile(seconds, 50),
        "save_p99": percentile(seconds, 99),
        "statements": percentile([entry[1] for entry in per_save], 50),
        "explain": explain,
        "received": len(latencies),
        "saves": len(per_save),
        "lat_p50": percentile(latencies, 50),
        "lat_p99": percentile(latencies, 99),
    }
    for name in KINDS:
        figures[name] = percentile([entry[2][name] * 1000 for entry in per_save], 50)
    return figures


# The report -------------------------------------------------------------------------------


def cell(value, width, spec):
    """``value`` formatted, or "-" where there is none (no multiplexed statement, no receipt)."""
    return f"{'-':>{width}}" if value is None else format(value, f">{width}{spec}")


def table(results, counts):
    """One row per N; ratios are to the first N's save p50."""
    base = results[counts[0]]["save_p50"]
    columns = [
        ("subs", 6, ",", lambda r: r["subs"]),
        ("save p50", 9, ".2f", lambda r: r["save_p50"]),
        ("save p99", 9, ".2f", lambda r: r["save_p99"]),
        (f"/N={counts[0]}", 7, ".2f", lambda r: r["save_p50"] / base),
        ("stmts", 6, ".0f", lambda r: r["statements"]),
        ("registry", 8, ".2f", lambda r: r["registry"]),
        ("match", 8, ".2f", lambda r: r["match"]),
        ("notify", 7, ".2f", lambda r: r["notify"]),
        ("rest", 6, ".2f", lambda r: r["rest"]),
        ("explain", 7, ".3f", lambda r: r["explain"]),
        ("client p50", 10, ".1f", lambda r: r["lat_p50"]),
        ("client p99", 10, ".1f", lambda r: r["lat_p99"]),
        ("got", 7, "", lambda r: f"{r['received']}/{r['saves']}"),
    ]
    header = f"{'N':>6} " + " ".join(f"{title:>{width}}" for title, width, _, _ in columns)
    print(header)
    print("-" * len(header))
    for count in counts:
        r = results[count]
        values = " ".join(cell(value(r), width, spec) for _, width, spec, value in columns)
        print(f"{count:>6,} {values}")


def report(args, results, others, load):
    cpus = os.cpu_count()
    print()
    print("Writer's cost per save against distinct subscriptions (bench/distinct.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"writes    {args.saves} save(update_fields=...) at {args.rate:g} per second, one")
    print("          autocommit transaction each, per setup and N; one ddpserver each")
    print(f"shared    clients, server, PostgreSQL and the writer all run on these {cpus} CPUs")
    print(f"registry  {others} ddpserver(s) already registered as live on this database")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print(f"targets   {TARGETS}")
    for name in args.setups:
        setup = SETUPS[name]
        print()
        print(f"{name}: {setup.publication}, the writer saves {setup.target}.{setup.field}")
        table(results[name], args.counts)
    print()
    print("ms throughout. subs: distinct subscriptions in the registry. /N=: save p50 over")
    print("the first N's. stmts: statements per save (p50); registry (lock, state), match,")
    print("notify, rest: their time in this process per save (p50). explain: Execution Time")
    print("of EXPLAIN ANALYZE of the last multiplexed matching statement (-: none).")
    print("client: save() returned -> the affected client's changed; got: changes it")
    print("received / saves.")
    print()
    first, last = args.counts[0], args.counts[-1]
    print(f"save() p50 at N={last:,} over N={first:,} (targets: {TARGETS}):")
    for name in args.setups:
        low, high = results[name][first], results[name][last]
        latency = cell(high["lat_p50"], 0, ".1f")
        print(
            f"  {name:<7} {high['save_p50']:9.2f} ms / {low['save_p50']:.2f} ms"
            f" = {high['save_p50'] / low['save_p50']:8.2f}x;"
            f" affected client p50 at N={last:,}: {latency} ms"
        )


def names(text):
    """``--setups``: a comma-separated choice of SETUPS, refused early when misspelt."""
    chosen = text.split(",")
    unknown = sorted(set(chosen) - set(SETUPS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown setups {unknown}: choose from {list(SETUPS)}")
    return chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--counts",
        type=numbers,
        default=[1, 100, 1000, 10_000],
        help="distinct subscriptions, i.e. clients (default 1,100,1000,10000)",
    )
    parser.add_argument("--saves", type=int, default=50, help="saves per run (default 50)")
    parser.add_argument("--rate", type=float, default=20.0, help="saves per second (default 20)")
    parser.add_argument(
        "--setups", type=names, default=list(SETUPS), help="of param,user,shared (default all)"
    )
    args = parser.parse_args()

    load = os.getloadavg()
    # One descriptor per client here and in the server, which inherits the limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    setup_django()
    others = live_servers()
    clean()
    clients = ClientProcess(AffectedClients)
    results = {name: {} for name in args.setups}
    try:
        fixtures = make_fixtures(max(args.counts) if "user" in args.setups else 0)
        for name in args.setups:
            for count in args.counts:
                print(f"{name}, {count:,} clients...", flush=True)
                results[name][count] = run(clients, SETUPS[name], count, fixtures, args)
    finally:
        clients.stop()
        clean()
    report(args, results, others, load)


if __name__ == "__main__":
    main()
