"""What the test clients themselves check of the server's messages."""

import json

import pytest

from ddp.testing import DDPClient


def data(kind, doc_id, **fields):
    return json.dumps({"msg": kind, "collection": "c", "id": doc_id, "fields": fields})


@pytest.mark.parametrize(
    ("messages", "wrong"),
    [
        ([data("added", "1"), data("added", "1")], "added for a document held"),
        ([data("changed", "1", title="x")], "changed for a document not held"),
        ([data("added", "1"), data("removed", "1"), data("removed", "1")], "removed for a"),
    ],
    ids=["added-twice", "changed-unknown", "removed-twice"],
)
def test_a_message_meteors_client_would_refuse_fails_the_test(messages, wrong):
    """Meteor's client throws on an ``added`` for a document it holds, and on a ``changed``
    or ``removed`` for one it does not: a server that sends one is wrong, and a test of it
    must not pass because the client forgave it."""
    client = DDPClient(connect=False)
    for text in messages[:-1]:
        client._received(text)
    with pytest.raises(AssertionError, match=wrong):
        client._received(messages[-1])
