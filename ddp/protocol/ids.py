"""Document and session ids as Meteor clients expect them.

The Meteor client does not take a document ``id`` literally: it decodes it with
``MongoID.idParse`` (PROTOCOL.md D5), where a leading ``-`` or ``~`` and a 24-hex
string mean something else. :func:`stringify_id` escapes the string ids this project
uses so they arrive unchanged; other DDP clients use ids verbatim, and keep working
because only unusual ids get the prefix.
"""

import secrets

#: ``Random.id()``'s alphabet: no 0/O, 1/I/l or other look-alikes (C5).
UNMISTAKABLE_CHARS = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"

#: Length of a ``Random.id()``; ddptest checks session ids against it.
RANDOM_ID_LENGTH = 17

_LOWER_HEX = frozenset("0123456789abcdef")


def _looks_like_object_id(text):
    return len(text) == 24 and set(text) <= _LOWER_HEX


def stringify_id(id):
    """Return the wire form of the string document id ``id`` (``MongoID.idStringify``).

    An id starting with ``-``, ``~`` or ``{``, or made of 24 lowercase hex digits,
    gets a ``-`` in front; every other string, the empty one included, goes as is.
    """
    if id and (id[0] in "-~{" or _looks_like_object_id(id)):
        return "-" + id
    return id


def parse_id(text):
    """Return the string id that :func:`stringify_id` turned into ``text``.

    Raise ``ValueError`` for the forms that denote no string in Meteor: ``"-"``
    (undefined), ``"~..."`` (a number or boolean) and 24 lowercase hex digits (an
    ObjectID).
    """
    if text == "-" or text.startswith("~") or _looks_like_object_id(text):
        raise ValueError(f"{text!r} is not the wire form of a string id")
    if text.startswith("-"):
        return text[1:]
    return text


def random_id(rng=secrets):
    """Return a 17-character ``Random.id()``; ``rng`` is anything with ``choice``.

    The default draws from the OS's secure generator, since session ids must not be
    guessable; tests pass a seeded ``random.Random``.
    """
    return "".join(rng.choice(UNMISTAKABLE_CHARS) for _ in range(RANDOM_ID_LENGTH))
