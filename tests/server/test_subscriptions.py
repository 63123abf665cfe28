"""Publications over a real socket: documents, ready, nosub, the merge box on the wire."""

import pytest

from bookstore.models import Author, Book

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.quick]


@pytest.fixture
def books():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    lee = Author.objects.create(name="Lee", email="lee@child.com")
    return {
        "janet": janet,
        "lee": lee,
        "hot_six": Book.objects.create(title="Hot Six", author=janet),
        "seven_up": Book.objects.create(title="Seven Up", author=janet),
        "killing_floor": Book.objects.create(title="Killing Floor", author=lee),
    }


def added(messages, collection):
    return {
        m["id"]: m["fields"]
        for m in messages
        if m["msg"] == "added" and m["collection"] == collection
    }


def test_all_books_sends_every_document_then_ready(client, books):
    sub_id, messages = client.sub("AllBooks")
    assert messages[-1] == {"msg": "ready", "subs": [sub_id]}
    janet = books["janet"]
    assert added(messages, "bookstore.author")[str(janet.pk)] == {
        "name": "Janet",
        "email": "janet@evanovich.com",
    }
    assert added(messages, "bookstore.book") == {
        str(book.pk): {"title": book.title, "author_id": str(book.author_id)}
        for book in (books["hot_six"], books["seven_up"], books["killing_floor"])
    }


def test_publication_with_parameters(client, books):
    sub_id, messages = client.sub("BooksByAuthorEmail", "janet@evanovich.com")
    assert set(added(messages, "bookstore.book")) == {
        str(books["hot_six"].pk),
        str(books["seven_up"].pk),
    }
    assert set(added(messages, "bookstore.author")) == {str(books["janet"].pk)}


def test_overlapping_subscriptions_share_documents(client, books):
    _, first = client.sub("BooksByAuthorEmail", "janet@evanovich.com")
    all_id, second = client.sub("AllBooks")
    # The merge box sends only what the first subscription did not already hold.
    assert set(added(second, "bookstore.book")) == {str(books["killing_floor"].pk)}
    assert set(added(second, "bookstore.author")) == {str(books["lee"].pk)}
    client.send({"msg": "unsub", "id": all_id})
    messages = client.recv_until(lambda m: m["msg"] == "nosub")
    removed = {(m["collection"], m["id"]) for m in messages if m["msg"] == "removed"}
    assert removed == {
        ("bookstore.book", str(books["killing_floor"].pk)),
        ("bookstore.author", str(books["lee"].pk)),
    }
    assert messages[-1] == {"msg": "nosub", "id": all_id}


def test_resubscribe_with_new_params_removes_nothing_shared(client, books):
    """Meteor's S10 order: sub(new), unsub(old) -> added, ready, nosub, and no removed."""
    old_id, _ = client.sub("AllBooks")
    new_id, messages = client.sub("BooksByAuthorEmail", "janet@evanovich.com")
    assert messages == [{"msg": "ready", "subs": [new_id]}]
    client.send({"msg": "unsub", "id": old_id})
    messages = client.recv_until(lambda m: m["msg"] == "nosub")
    assert {m["id"] for m in messages if m["msg"] == "removed"} == {
        str(books["killing_floor"].pk),
        str(books["lee"].pk),
    }


def test_unsub_unknown_id_and_without_id(client):
    client.send({"msg": "unsub", "id": "never"})
    assert client.recv() == {"msg": "nosub", "id": "never"}
    client.send({"msg": "unsub"})
    assert client.recv() == {"msg": "nosub"}


def test_duplicate_sub_id_is_ignored(client, books):
    client.send({"msg": "sub", "id": "dup", "name": "AllBooks", "params": []})
    client.recv_until(lambda m: m["msg"] == "ready")
    client.send({"msg": "sub", "id": "dup", "name": "AllBooks", "params": []})
    client.send({"msg": "ping", "id": "p"})
    assert client.recv() == {"msg": "pong", "id": "p"}


def test_unknown_publication_is_a_404_nosub(client):
    sub_id, messages = client.sub("__no_such_pub__")
    assert messages == [
        {
            "msg": "nosub",
            "id": sub_id,
            "error": {
                "isClientSafe": True,
                "error": 404,
                "reason": "Subscription '__no_such_pub__' not found",
                "message": "Subscription '__no_such_pub__' not found [404]",
                "errorType": "Meteor.Error",
            },
        }
    ]


def test_failing_publication_is_a_500_nosub_without_traceback(client):
    sub_id, messages = client.sub("Failing")
    assert messages[-1]["msg"] == "nosub"
    assert messages[-1]["error"]["error"] == 500
    assert messages[-1]["error"]["reason"] == "Internal server error"
    assert "secret" not in str(messages)


def test_meteor_error_from_publication_reaches_the_client(client):
    _, messages = client.sub("Refusing")
    error = messages[-1]["error"]
    assert (error["error"], error["reason"], error["details"]) == (
        "not-allowed",
        "You may not",
        {"why": "test"},
    )


def test_wrong_number_of_params_is_match_failed(client):
    _, messages = client.sub("BooksByAuthorEmail")
    assert messages[-1]["error"]["error"] == 400
    assert messages[-1]["error"]["reason"] == "Match failed"


@pytest.mark.parametrize(
    "name", ["meteor_autoupdate_clientVersions", "meteor.loginServiceConfiguration"]
)
def test_subscriptions_meteor_opens_by_itself_are_ready_and_empty(client, name, books):
    sub_id, messages = client.sub(name)
    assert messages == [{"msg": "ready", "subs": [sub_id]}]


def test_routed_collection_with_field_selection(client, books):
    _, messages = client.sub("BooksAsLibrary")
    assert added(messages, "library.items")[str(books["hot_six"].pk)] == {"title": "Hot Six"}
    assert added(messages, "bookstore.book") == {}
