"""Model instances -> DDP documents, in one query per queryset or one per page."""

import datetime
import decimal
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bookstore.models import Author, Book
from ddp.api import API
from ddp.protocol import Added, encode
from ddp.serialize import Pages, documents, m2m_key
from tests.testapp.models import Article, Tag

pytestmark = pytest.mark.django_db


def collection(model):
    API.autodiscover()
    return API.collection_for_model(model)


def test_foreign_key_is_published_as_id_string():
    author = Author.objects.create(name="A", email="a@example.com")
    book = Book.objects.create(title="T", author=author)
    assert list(documents(Book.objects.all(), collection(Book))) == [
        (str(book.pk), {"title": "T", "author_id": str(author.pk)})
    ]


def test_every_field_type_on_the_wire():
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    article = Article.objects.create(
        title="All",
        published=datetime.datetime(2020, 1, 2, 3, 4, 5, 678999, tzinfo=datetime.timezone.utc),
        day=datetime.date(2020, 1, 2),
        at=datetime.time(3, 4, 5),
        duration=datetime.timedelta(minutes=90),
        price=decimal.Decimal("12.30"),
        ratio=0.5,
        count=2**60,
        flag=True,
        ref=ref,
        blob=b"\x00\xff",
        data={"$date": 5},
    )
    tag = Tag.objects.create(name="t")
    article.tags.add(tag)
    [(doc_id, fields)] = documents(Article.objects.all(), collection(Article))
    wire = encode(Added("testapp.article", doc_id, fields))
    assert wire == (
        f'{{"msg":"added","collection":"testapp.article","id":"{article.pk}","fields":{{'
        '"title":"All","body":"","published":{"$date":1577934245678},"day":"2020-01-02",'
        '"at":"03:04:05","duration":5400.0,"price":"12.30","ratio":0.5,'
        '"count":"1152921504606846976","flag":true,'
        '"ref":"12345678-1234-5678-1234-567812345678","blob":{"$binary":"AP8="},'
        f'"data":{{"$escape":{{"$date":5}}}},"tag_ids":["{tag.pk}"]}}}}'
    )


def test_many_to_many_ids_in_one_query():
    tags = [Tag.objects.create(name=str(n)) for n in range(3)]
    for n in range(5):
        Article.objects.create(title=str(n)).tags.set(tags[: n % 4])
    with CaptureQueriesContext(connection) as queries:
        docs = dict(documents(Article.objects.all(), collection(Article)))
    assert len(queries) == 1
    assert sorted(len(fields["tag_ids"]) for fields in docs.values()) == [0, 0, 1, 2, 3]
    assert all(isinstance(i, str) for fields in docs.values() for i in fields["tag_ids"])


@pytest.mark.parametrize(
    ("name", "key"), [("tags", "tag_ids"), ("categories", "category_ids"), ("staff", "staff_ids")]
)
def test_many_to_many_key(name, key):
    assert m2m_key(name) == key


def read_pages(pages):
    """``(rows, queries)`` of every page of ``pages``, up to the first empty one."""
    read = []
    while True:
        with CaptureQueriesContext(connection) as queries:
            page = pages.next()
        read.append((len(page), len(queries)))
        if not page:
            return read


def test_pages_read_every_row_once_by_primary_key_a_query_each():
    tags = [Tag.objects.create(name=str(n)) for n in range(3)]
    articles = [Article.objects.create(title=str(n)) for n in range(5)]
    for n, article in enumerate(articles):
        article.tags.set(tags[: n % 4])
    pages = Pages(Article.objects.order_by("-title"), collection(Article), 2)
    docs = []
    sizes = []
    while page := pages.next():
        docs.extend(page)
        sizes.append(len(page))
    assert sizes == [2, 2, 1]
    assert docs == list(documents(Article.objects.order_by("pk"), collection(Article)))
    assert [len(fields["tag_ids"]) for _, fields in docs] == [0, 1, 2, 3, 0]


def test_pages_take_one_query_each_and_none_after_a_short_page():
    for n in range(4):
        Article.objects.create(title=str(n))
    pages = Pages(Article.objects.all(), collection(Article), 2)
    assert read_pages(pages) == [(2, 1), (2, 1), (0, 1)]
    pages = Pages(Article.objects.all(), collection(Article), 3)
    assert read_pages(pages) == [(3, 1), (1, 1), (0, 0)]


@pytest.mark.parametrize(
    "query",
    [
        lambda books: books.order_by("-title")[:3],
        lambda books: books.order_by("author_id", "title").distinct("author_id"),
        lambda books: books.filter(title="b").union(books.filter(title="d")),
    ],
    ids=["slice", "distinct-on", "union"],
)
def test_pages_of_a_query_a_filter_on_pk_would_change(query):
    """A slice, ``distinct(*fields)`` or a union: the pages hold the same rows."""
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    lee = Author.objects.create(name="Lee", email="lee@child.com")
    for title, author in zip("abcde", [janet, lee, janet, lee, janet], strict=True):
        Book.objects.create(title=title, author=author)
    queryset = query(Book.objects.all())
    pages = Pages(queryset, collection(Book), 2)
    docs = []
    while page := pages.next():
        docs.extend(page)
    assert dict(docs) == dict(documents(queryset, collection(Book)))
    assert len(docs) == len(dict(docs))
