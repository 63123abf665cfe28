"""Multiplexed matching (``ddp.bus.matching``) against each subscription's own queryset.

A writer decides which distinct subscriptions a saved row belongs to with one statement
per collection, rebuilt from templates and the values the registry stores. Why each test:

* the property test: a wrong template or stored value would silently send a change to the
  wrong subscriptions; its oracle is each full queryset's primary keys, not ddp's own
  ``contained()``;
* ``compile_subscription``: which querysets get a template, which fall back and why, and
  which subscriptions share one (sharing is what keeps a writer's cost flat);
* failures: matching must never fail the writer, and what it cannot decide is re-run;
* ``DDP["MAX_SUBSCRIPTION_PARAMS"]``: every write reads every distinct subscription's values.
"""

import contextlib
import datetime
import decimal
import sys
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Left
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookstore.models import Author, Book
from ddp import metrics
from ddp import session as session_module
from ddp.api import API, Context, Publication
from ddp.bus import producer
from ddp.bus.matching import Spec, compile_group, compile_subscription
from ddp.bus.memory import InMemoryBus
from ddp.bus.registry import subscription_key
from ddp.testing.client import SubscriptionError
from tests.testapp.models import Article, Shelf, Tag

# The oldest and newest Python and Django run these too (CI's quick subset).
pytestmark = pytest.mark.quick

# -- publications, put into API.publications for a test only ----------------------------


class MatchTitle(Publication):
    """Books whose title matches ``value`` by ``lookup``."""

    def get_queries(self, lookup, value):
        return [Book.objects.filter(**{f"title__{lookup}": value})]


class MatchArticleField(Publication):
    """Articles whose ``field`` matches ``value`` by ``lookup``: every type the registry
    stores as text and casts back (dates, times, decimals, uuids, intervals, integers)."""

    def get_queries(self, field, lookup, value):
        return [Article.objects.filter(**{f"{field}__{lookup}": value})]


class MatchAuthorsWithTitle(Publication):
    """A foreign key both ways, and ``distinct()``."""

    def get_queries(self, title):
        return [
            Author.objects.filter(books__title=title).distinct(),
            Book.objects.filter(author__books__title=title).distinct(),
        ]


class MatchTagged(Publication):
    """A many-to-many relation both ways."""

    def get_queries(self, name):
        return [Article.objects.filter(tags__name=name), Tag.objects.filter(article__title=name)]


class MatchTitleOrNotBy(Publication):
    """OR and NOT across a join; two querysets of one collection; two collections."""

    def get_queries(self, title, email):
        return [
            Book.objects.filter(Q(title=title) | ~Q(author__email=email)),
            Book.objects.filter(title__startswith=title, author__email__lt=email),
            Author.objects.filter(~Q(email=email), books__isnull=False).distinct(),
        ]


class MatchFirstBooks(Publication):
    """A slice of an ordered queryset: whether a row is in it depends on the other rows."""

    def get_queries(self, low, high):
        return [Book.objects.order_by("title", "pk")[low:high]]


class MatchFirstBookOfEachAuthor(Publication):
    """``distinct(*fields)``: one row per author, which one depends on the others."""

    def get_queries(self, prefix):
        return [
            Book.objects.filter(title__startswith=prefix)
            .order_by("author_id", "pk")
            .distinct("author_id")
        ]


class MatchShelvesNamed(Publication):
    """``user_rel`` with parameters of its own (``Shelf`` is ``user_rel = "owner"``)."""

    def get_queries(self, name):
        return [Shelf.objects.filter(name__in=[name, name + "a"])]


class MatchExtra(Publication):
    """``extra()``: no template; the writer runs it for each subscription."""

    def get_queries(self, title):
        return [Book.objects.extra(where=["bookstore_book.title = %s"], params=[title])]


class MatchWriterFails(Publication):
    """Raises in the writer only (its Context has no connection id), and uses ``extra()``
    so that the writer runs it."""

    def get_queries(self, title):
        if self.this.connection_id == "":
            raise RuntimeError("only the writer sees this")
        return [Book.objects.extra(where=["bookstore_book.title = %s"], params=[title])]


class MatchPublishedAfter(Publication):
    def get_queries(self, when):
        return [Article.objects.filter(published__gt=when)]


class MatchRef(Publication):
    def get_queries(self, ref):
        return [Article.objects.filter(ref=ref)]


class MatchTitlePrefix(Publication):
    """An integer parameter of a function (PostgreSQL types it ``int4``)."""

    def get_queries(self, length, prefix):
        return [Book.objects.annotate(start=Left("title", length)).filter(start=prefix)]


PUBLICATIONS = [
    MatchTitle,
    MatchArticleField,
    MatchAuthorsWithTitle,
    MatchTagged,
    MatchTitleOrNotBy,
    MatchFirstBooks,
    MatchFirstBookOfEachAuthor,
    MatchShelvesNamed,
    MatchExtra,
    MatchWriterFails,
    MatchPublishedAfter,
    MatchRef,
    MatchTitlePrefix,
]

#: Every collection the publications above fill, and its model.
COLLECTIONS = {
    "bookstore.book": Book,
    "bookstore.author": Author,
    "testapp.article": Article,
    "testapp.tag": Tag,
    "testapp.shelf": Shelf,
}

BOOKS = "bookstore.book"
ARTICLES = "testapp.article"


@pytest.fixture
def publications(db, monkeypatch):
    for publication in PUBLICATIONS:
        monkeypatch.setitem(API.publications, publication.get_name(), publication)


@pytest.fixture
def users(db):
    return [User.objects.create_user(f"matcher{n}") for n in range(2)]


@pytest.fixture
def author(db):
    return Author.objects.create(name="Lee", email="lee@child.com")


def subscribe(bus, name, params, user=None):
    """Register a subscription in ``bus`` as a server does: ``(key, pairs, specs)``."""
    user = user or AnonymousUser()
    publication = API.publications[name]
    pairs = API.resolve_queries(publication(Context(connection_id="c", user=user)), params)
    specs = compile_subscription(pairs)
    user_id = str(user.pk) if user.is_authenticated else None
    key = subscription_key(name, params, user_id)
    bus.subscribe(object(), key, name, params, user_id, frozenset(specs), lambda: specs)
    return key, pairs, specs


def match(bus, collection, pk):
    """``Matcher.match`` of one row, as the producer calls it after a save."""
    (found,) = match_all(bus, collection, [pk])
    return found


def match_all(bus, collection, pks):
    """``Matcher.match`` of the rows ``pks``, after reading the registry."""
    bus.matcher.sync("default", bus.registry_state(list(COLLECTIONS), "default").version)
    return bus.matcher.match("default", collection, pks)


def counter(name):
    return metrics.counters[name]


# -- the property: the multiplexed answer is each queryset's answer -----------------------

EMAILS = ["a@x.io", "b@x.io", "c@x.io"]
TITLES = st.text("ab", max_size=3)
#: Parameters may hold what titles do not: a capital (iexact) and LIKE's wildcard.
TEXTS = st.text("abA%", max_size=3)
USERS = st.sampled_from([None, 0, 1])
DAYS = [datetime.date(2024, 1, d) for d in (1, 2, 3)]
MOMENTS = [datetime.datetime(2024, 1, 1, h, tzinfo=datetime.timezone.utc) for h in (0, 12)]
REFS = [uuid.UUID(int=1), uuid.UUID(int=2)]
PRICES = [decimal.Decimal(p) for p in ("-2.00", "0.10", "1.50")]
RATIOS = [-1.5, 0.1, 1.0]
SPANS = [datetime.timedelta(seconds=-1), datetime.timedelta(0), datetime.timedelta(days=1)]
TIMES = [datetime.time(9), datetime.time(17, 30)]
COUNTS = st.integers(-3, 3)
#: A client may send any integer; a BigIntegerField holds these bounds and no more.
EDGES = st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**70])

#: field -> (values of rows, parameters as a client sends them: JSON)
ARTICLE_FIELDS = {
    "title": (TITLES, TEXTS),
    "count": (COUNTS, COUNTS | EDGES),
    "ratio": (st.sampled_from(RATIOS), st.sampled_from(RATIOS) | COUNTS),
    "price": (st.sampled_from(PRICES), st.sampled_from([str(p) for p in PRICES] + ["0.1", "1"])),
    "day": (st.sampled_from(DAYS), st.sampled_from([d.isoformat() for d in DAYS])),
    "at": (st.sampled_from(TIMES), st.sampled_from([t.isoformat() for t in TIMES])),
    "published": (
        st.sampled_from(MOMENTS),
        st.sampled_from([m.isoformat() for m in MOMENTS] + ["2024-01-01T13:00:00+01:00"]),
    ),
    "duration": (st.sampled_from(SPANS), st.sampled_from(["-00:00:01", "0", "P1D", "1 00:00:00"])),
    "flag": (st.booleans(), st.booleans()),
    "ref": (st.sampled_from(REFS), st.sampled_from([str(r) for r in REFS])),
}
NULLABLE = {"published", "day", "at", "duration", "price", "ratio", "count"}
TITLE_LOOKUPS = ["exact", "iexact", "in", "range", "lt", "gt", "isnull", "startswith", "contains"]
ARTICLE_LOOKUPS = ["exact", "in", "range", "lt", "gt", "isnull"]


def value_of(lookup, values):
    """The parameter of ``lookup`` (not ``in``) over a field whose values are ``values``."""
    if lookup == "range":
        return st.lists(values, min_size=2, max_size=2)
    if lookup == "isnull":
        return st.booleans()
    return values


def family(name, shape):
    """1-3 subscriptions of publication ``name`` that differ in values and user only, so
    that several share a template: ``shape`` draws a strategy of their parameters."""
    return shape.flatmap(
        lambda params: st.lists(st.tuples(st.just(name), params, USERS), min_size=1, max_size=3)
    )


def lookup_family(name, prefix, values, lookups):
    def shape(lookup):
        if lookup == "in":
            # One length per family: lists of other lengths compile to other templates.
            return st.integers(0, 3).map(
                lambda n: st.lists(values, min_size=n, max_size=n).map(
                    lambda items: [*prefix, lookup, items]
                )
            )
        return st.just(value_of(lookup, values).map(lambda value: [*prefix, lookup, value]))

    return family(name, st.sampled_from(lookups).flatmap(shape))


def fixed(name, *params):
    return family(name, st.just(st.tuples(*params).map(list)))


SUBSCRIPTIONS = st.one_of(
    fixed("BooksByAuthorEmail", st.sampled_from(EMAILS)),
    lookup_family("MatchTitle", [], TEXTS, TITLE_LOOKUPS),
    fixed("MatchTitle", st.just("exact"), st.none()),
    st.sampled_from(sorted(ARTICLE_FIELDS)).flatmap(
        lambda field: lookup_family(
            "MatchArticleField", [field], ARTICLE_FIELDS[field][1], ARTICLE_LOOKUPS
        )
    ),
    fixed("MatchAuthorsWithTitle", TITLES),
    fixed("MatchTagged", TITLES),
    fixed("MatchTitleOrNotBy", TITLES, st.sampled_from(EMAILS)),
    family(
        "MatchFirstBooks",
        st.integers(0, 4).map(lambda high: st.integers(0, 2).map(lambda low: [low, high])),
    ),
    fixed("MatchFirstBookOfEachAuthor", TITLES),
    fixed("MatchShelvesNamed", TITLES),
    fixed("MyShelves"),
    fixed("MatchExtra", TITLES),
)


@st.composite
def articles(draw):
    fields = {}
    for field, (values, _) in ARTICLE_FIELDS.items():
        fields[field] = draw(values | st.none() if field in NULLABLE else values)
    return fields, draw(st.lists(st.integers(0, 2), max_size=2, unique=True))


WORLDS = st.fixed_dictionaries(
    {
        "emails": st.lists(st.sampled_from(EMAILS), min_size=1, unique=True),
        "books": st.lists(st.tuples(TITLES, st.integers(0, 2)), max_size=6),
        "tags": st.lists(TITLES, max_size=3),
        "articles": st.lists(articles(), max_size=3),
        "shelves": st.lists(st.tuples(st.integers(0, 1), TITLES), max_size=4),
        "subscriptions": st.lists(SUBSCRIPTIONS, min_size=1, max_size=4).map(
            lambda families: [sub for subs in families for sub in subs]
        ),
        # Which row to delete: an index into every row, of every collection, in order.
        "delete": st.integers(0, 1000),
    }
)


def build(world, users):
    authors = [Author.objects.create(name=email, email=email) for email in world["emails"]]
    for title, n in world["books"]:
        Book.objects.create(title=title, author=authors[n % len(authors)])
    tags = [Tag.objects.create(name=name) for name in world["tags"]]
    for fields, tagged in world["articles"]:
        article = Article.objects.create(**fields)
        article.tags.set([tags[n] for n in tagged if n < len(tags)])
    for owner, name in world["shelves"]:
        Shelf.objects.create(owner=users[owner], name=name)


def check(bus, subscriptions, also=()):
    """Every row of every collection, one that never existed, and ``also`` (collection,
    pk) are matched by exactly the subscriptions whose full querysets hold them, with
    nothing unsure; only the subscriptions without a template run one by one."""
    for collection, model in COLLECTIONS.items():
        truth = {
            key: {
                pk
                for queryset, target in sub["pairs"]
                if target.get_name() == collection
                for pk in queryset.values_list("pk", flat=True)
            }
            for key, sub in subscriptions.items()
        }
        one_by_one = sum(
            1
            for sub in subscriptions.values()
            if sub["specs"].get(collection) is not None and not sub["specs"][collection].template
        )
        pks = sorted(model.objects.values_list("pk", flat=True))
        pks += [(pks[-1] if pks else 0) + 1000] + [pk for c, pk in also if c == collection]
        for pk in pks:
            fallbacks = counter("ddp_match_fallback_total")
            keys, unsure = match(bus, collection, pk)
            expected = {key for key, held in truth.items() if pk in held}
            wrong = [
                (
                    subscriptions.get(key, {}).get("described", key),
                    "unsure" if key in unsure else "matched" if key in keys else "missed",
                )
                for key in (set(keys) ^ expected) | unsure
            ]
            assert (set(keys), set(unsure)) == (expected, set()), f"{collection} {pk}: {wrong}"
            assert counter("ddp_match_fallback_total") - fallbacks == one_by_one
        # All the rows at once, as the replication reader matches a batch: the same answer
        # for each, and each publication without a template still runs once, not per row.
        fallbacks = counter("ddp_match_fallback_total")
        for pk, (keys, unsure) in zip(pks, match_all(bus, collection, pks), strict=True):
            expected = {key for key, held in truth.items() if pk in held}
            assert (set(keys), set(unsure)) == (expected, set()), f"{collection} {pk} in a batch"
        assert counter("ddp_match_fallback_total") - fallbacks == one_by_one


class _Rollback(Exception):
    pass


def flatten(params):
    """Every value in ``params``, lists opened."""
    for value in params:
        if isinstance(value, (list, tuple)):
            yield from flatten(value)
        else:
            yield value


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=WORLDS)
def test_the_multiplexed_match_is_each_querysets_answer(publications, users, world):
    """For random rows and subscriptions: each row of each collection is matched by the
    subscriptions whose full querysets hold it, nothing is unsure, only ``extra()`` (and
    an integer beyond 64 bits) runs one by one; and after a deletion the same holds, the
    deleted row matching none."""
    try:
        with transaction.atomic():
            build(world, users)
            bus = InMemoryBus()
            subscriptions = {}
            for name, params, user in world["subscriptions"]:
                user = None if user is None else users[user]
                key, pairs, specs = subscribe(bus, name, params, user)
                # extra() takes the per-subscription path, and integers beyond bigint that
                # reach the SQL (Django drops some, as in ``lt`` 2**63); nothing else does.
                beyond = any(
                    isinstance(v, int) and not -(2**63) <= v < 2**63 for v in flatten(params)
                )
                for spec in specs.values():
                    if spec is None:
                        continue
                    if name == "MatchExtra":
                        assert not spec.template, (name, params, spec)
                    elif not spec.template:
                        assert beyond and spec.reason == "an integer beyond 64 bits", spec
                described = (name, *params, user and user.username)
                subscriptions[key] = {"pairs": pairs, "specs": specs, "described": described}
            check(bus, subscriptions)

            rows = [(c, pk) for c, m in COLLECTIONS.items() for pk in m.objects.values_list("pk")]
            if rows:
                collection, (pk,) = rows[world["delete"] % len(rows)]
                COLLECTIONS[collection].objects.get(pk=pk).delete()
                assert match(bus, collection, pk) == (frozenset(), frozenset())
                check(bus, subscriptions, also=[(collection, pk)])
            raise _Rollback
    except _Rollback:
        pass


@pytest.mark.parametrize("first", [5, 2**70], ids=["built-from-5", "built-from-2**70"])
def test_an_integer_beyond_bigint_in_a_shared_template(publications, first):
    """A client may send any integer; Django compares it as a number. Two ``range``
    subscriptions of one shape, one bound beyond bigint, which the registry's integers
    cannot hold: that one is matched one by one, and each holds the row or not as its
    queryset does, whichever comes first."""
    article = Article.objects.create(title="a", count=3)
    bus = InMemoryBus()
    held = {}
    for high in (first, 2**70 + 5 - first):
        key, pairs, specs = subscribe(bus, "MatchArticleField", ["count", "range", [0, high]])
        if high > 2**63:
            assert specs[ARTICLES].reason == "an integer beyond 64 bits"
        else:
            assert specs[ARTICLES].template
        held[key] = article.pk in set(pairs[0][0].values_list("pk", flat=True))
    assert all(held.values())
    assert match(bus, ARTICLES, article.pk) == (frozenset(held), frozenset())


def test_an_integer_parameter_of_a_function(publications, author):
    """``LEFT(title, %s)``: PostgreSQL types the length ``int4`` and has no ``left(text,
    bigint)``; every book saved must still be matched, not left unsure."""
    book = Book.objects.create(title="ab", author=author)
    bus = InMemoryBus()
    key, pairs, specs = subscribe(bus, "MatchTitlePrefix", [1, "a"])
    other, _, _ = subscribe(bus, "MatchTitlePrefix", [2, "b"])
    assert specs[BOOKS].template
    assert match(bus, BOOKS, book.pk) == (frozenset({key}), frozenset())


# -- compiling: what gets a template --------------------------------------------------------


def test_what_can_hold_no_row_compiles_to_no_spec(publications):
    assert compile_group(BOOKS, [Book.objects.none()]) is None
    assert compile_group(BOOKS, [Book.objects.filter(title__in=[])]) is None
    # An anonymous user's user_rel: a subscription no change can reach.
    pairs = API.resolve_queries(MatchShelvesNamed(Context("c", AnonymousUser())), ["a"])
    assert compile_subscription(pairs) == {"testapp.shelf": None}


@pytest.mark.parametrize(
    "queryset",
    [
        Book.objects.extra(where=["bookstore_book.title = %s"], params=["a"]),
        Author.objects.filter(books__in=Book.objects.extra(where=["1 = 1"])),
    ],
    ids=["extra", "extra-in-subquery"],
)
def test_extra_falls_back_and_says_why(db, queryset):
    spec = compile_group(queryset.model._meta.label_lower, [queryset])
    assert spec.template == "" and spec.args == ()
    assert "extra" in spec.reason


def test_a_parameter_with_no_text_form_falls_back(db):
    spec = compile_group(ARTICLES, [Article.objects.filter(blob=b"x")])
    assert spec.template == ""
    assert "parameter of type" in spec.reason


def test_subscriptions_that_differ_in_values_share_a_template(publications, users):
    specs = [
        compile_subscription(API.resolve_queries(API.publications[name](Context("c", u)), p))
        for name, p, u in [
            ("BooksByAuthorEmail", ["a@x.io"], None),
            ("BooksByAuthorEmail", ["b@x.io"], None),
        ]
    ]
    for collection in (BOOKS, "bookstore.author"):
        one, other = specs[0][collection], specs[1][collection]
        assert one.template and one.template == other.template
        assert (one.args, other.args) == (("a@x.io",), ("b@x.io",))
    # Users of a user_rel are values too.
    shelves = [
        compile_subscription(API.resolve_queries(MatchShelvesNamed(Context("c", u)), ["a"]))
        for u in users
    ]
    one, other = (s["testapp.shelf"] for s in shelves)
    assert one.template == other.template and one.args != other.args


@pytest.mark.parametrize(
    "one, other, shared",
    [
        (Q(published__isnull=True), Q(published__isnull=False), False),
        (Q(title__in=["a"]), Q(title__in=["a", "b"]), False),
        (Q(title__in=["a", "b"]), Q(title__in=["b", "c"]), True),
        (Q(title="a"), Q(title=None), False),
        (Q(count__range=[0, 1]), Q(count__range=[5, 9]), True),
    ],
    ids=["isnull", "in-lengths", "in-values", "null", "range-values"],
)
def test_other_sql_is_another_template(db, one, other, shared):
    first, second = (compile_group(ARTICLES, [Article.objects.filter(q)]) for q in (one, other))
    assert first.template and second.template
    assert (first.template == second.template) is shared


# -- matching never fails the writer --------------------------------------------------------


def test_a_publication_failing_in_the_writer_is_rerun_by_its_server(
    ddp_client, publications, author, monkeypatch
):
    ddp_client.subscribe("MatchWriterFails", "x")
    bus = ddp_client.bus
    events, deliver = [], bus.deliver
    monkeypatch.setattr(bus, "deliver", lambda event: (events.append(event), deliver(event)))
    failures, reruns = counter("ddp_match_failures_total"), counter("ddp_match_reruns_total")

    with transaction.atomic():
        book = Book.objects.create(title="x", author=author)
        assert Book.objects.filter(pk=book.pk).exists()  # the transaction is still usable
    assert not connection.needs_rollback
    bus.flush()
    [event] = events  # delivered: the block committed
    assert event.unsure == {subscription_key("MatchWriterFails", ["x"], None)}
    assert event.subs == frozenset()
    assert counter("ddp_match_failures_total") > failures

    ddp_client.assert_added(BOOKS, str(book.pk), title="x")
    assert counter("ddp_match_reruns_total") > reruns


@pytest.mark.parametrize(
    "name, value, forged",
    [
        ("MatchPublishedAfter", "2024-01-01T00:00:00+00:00", "not a date"),
        ("MatchRef", str(REFS[0]), "not a uuid"),
    ],
)
def test_a_stored_value_that_does_not_cast_is_unsure(publications, name, value, forged):
    article = Article.objects.create(title="a", published=MOMENTS[1], ref=REFS[0])
    bus = InMemoryBus()
    key, _, specs = subscribe(bus, name, [value])
    bad = {ARTICLES: Spec(specs[ARTICLES].template, (forged,))}
    bus.subscribe(object(), "forged", name, [value], None, frozenset(bad), lambda: bad)
    failures = counter("ddp_match_failures_total")
    with transaction.atomic():
        keys, unsure = match(bus, ARTICLES, article.pk)
        assert "forged" in unsure and "forged" not in keys
        assert key in keys | unsure
        assert Article.objects.filter(pk=article.pk).exists()
    assert Article.objects.count() == 1
    assert counter("ddp_match_failures_total") > failures


@contextlib.contextmanager
def recursion_limit(limit):
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def test_parameters_nested_too_deep_do_not_fail_matching(publications, author):
    deep = []
    for _ in range(5000):
        deep = [deep]
    bus = InMemoryBus()
    specs = {BOOKS: Spec("", reason="extra() or raw SQL")}
    with recursion_limit(20_000):  # the bus stores the parameters as EJSON
        bus.subscribe(object(), "deep", "MatchExtra", [deep], None, frozenset(specs), lambda: specs)
    book = Book.objects.create(title="x", author=author)
    keys, unsure = match(bus, BOOKS, book.pk)
    assert "deep" in unsure and "deep" not in keys

    events = []
    previous = producer.use_backend(bus)
    try:
        bus.deliver = events.append
        with transaction.atomic():
            book.title = "y"
            book.save()
        bus.flush()
    finally:
        producer.use_backend(previous)
    assert [event.unsure for event in events] == [frozenset({"deep"})]


# -- DDP["MAX_SUBSCRIPTION_PARAMS"] --------------------------------------------------------


@override_settings(DDP={"MAX_SUBSCRIPTION_PARAMS": 100})
def test_subscription_parameters_over_the_limit_get_nosub(ddp_client):
    with pytest.raises(SubscriptionError) as refused:
        ddp_client.subscribe("BooksByAuthorEmail", "a" * 195 + "@x.io")
    assert refused.value.error["error"] == 400
    assert "100 bytes" in refused.value.error["reason"]
    # ["<96 characters>"] is 100 bytes: not over.
    ddp_client.subscribe("BooksByAuthorEmail", "a" * 91 + "@x.io")
    ddp_client.subscribe("BooksByAuthorEmail", "a@x.io")


def test_parameters_deeper_than_ejson_goes_measure_as_over_any_limit():
    """Measuring the parameters must not raise into the connection's worker. (Frames that
    deep are refused as a parse error before a ``sub`` is made of them; what parses in
    one thread may still be too deep for EJSON on a deeper stack.)"""
    deep = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    assert session_module._size([deep]) == float("inf")
    assert session_module._size(["a@x.io"]) == len('["a@x.io"]')
