"""Methods over a real socket: one result and one updated each, transactions, errors."""

import pytest

from bookstore.models import Author, Book

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.quick]


def only(messages, kind):
    return [m for m in messages if m["msg"] == kind]


def test_method_result_and_updated_exactly_once(client):
    result, messages = client.method("test.echo", 1, "two", {"three": 3})
    assert result == {"msg": "result", "id": result["id"], "result": [1, "two", {"three": 3}]}
    assert only(messages, "updated") == [{"msg": "updated", "methods": [result["id"]]}]
    client.send({"msg": "ping", "id": "after"})
    assert client.recv() == {"msg": "pong", "id": "after"}


def test_method_returning_none_sends_null_result(client):
    result, _ = client.method("test.nothing")
    assert result["result"] is None


def test_method_that_writes_commits(client):
    result, _ = client.method("bookstore.addBook", "Dune", "frank@herbert.com")
    book = Book.objects.get(pk=int(result["result"]))
    assert (book.title, book.author.email) == ("Dune", "frank@herbert.com")


def test_method_sees_a_this_context(client):
    client.send(
        {"msg": "method", "id": "s", "method": "test.whoami", "params": [], "randomSeed": "abc"}
    )
    result = client.recv_until(lambda m: m["msg"] == "result")[-1]
    assert result["result"] == {"connection_id": client.session_id, "user_id": None, "seed": "abc"}


def test_unknown_method_is_404_then_updated(client):
    result, messages = client.method("nope")
    assert result["error"] == {
        "isClientSafe": True,
        "error": 404,
        "reason": "Method 'nope' not found",
        "message": "Method 'nope' not found [404]",
        "errorType": "Meteor.Error",
    }
    assert len(only(messages, "updated")) == 1


def test_meteor_error_reaches_the_client_as_is(client):
    result, _ = client.method("test.refuse")
    assert result["error"]["error"] == "not-allowed"
    assert result["error"]["details"] == {"why": "test"}


def test_method_that_raises_after_writing_rolls_back_and_keeps_the_client(client):
    result, messages = client.method("test.writeThenFail", "ghost")
    assert result["error"]["error"] == 500
    assert "boom" not in str(messages)
    assert len(only(messages, "updated")) == 1
    assert not Author.objects.filter(name="ghost").exists()
    client.send({"msg": "ping", "id": "alive"})
    assert client.recv() == {"msg": "pong", "id": "alive"}
    result, _ = client.method("test.echo", "again")
    assert result["result"] == ["again"]


def test_wrong_arguments_are_match_failed(client):
    result, _ = client.method("bookstore.addBook", "only one")
    assert (result["error"]["error"], result["error"]["reason"]) == (400, "Match failed")


def test_params_may_be_omitted(client):
    client.send({"msg": "method", "id": "np", "method": "test.nothing"})
    messages = client.recv_until(lambda m: m["msg"] == "updated")
    assert {"msg": "result", "id": "np", "result": None} in messages
