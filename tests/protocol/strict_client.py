"""A client as strict as Meteor's before 2.4 (D7), for the merge box's property tests."""

from ddp.protocol import Added, Changed


def apply(client, message):
    """Apply one message to ``client`` (``{id: fields}``), raising on anything inconsistent:
    a second ``added``, a ``changed`` or ``removed`` of what it does not hold, a clear of a
    field it does not have."""
    if isinstance(message, Added):
        assert message.id not in client
        client[message.id] = dict(message.fields)
    elif isinstance(message, Changed):
        doc = client[message.id]
        doc.update(message.fields or {})
        for key in message.cleared:
            del doc[key]
    else:
        del client[message.id]
