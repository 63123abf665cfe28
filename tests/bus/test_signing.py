"""Signed notifications: a tag under SECRET_KEY, bound to the channel and the exact text."""

import ast
import base64
import re
from pathlib import Path

import pytest
from django.test.utils import override_settings
from django.utils.crypto import salted_hmac

import ddp
from ddp.bus import payload, signing
from ddp.bus.payload import MAX_PAYLOAD, Event, encode

pytestmark = pytest.mark.quick

TEXT = '{"v":1,"e":"x","c":"bookstore.book","i":"1","f":null,"s":[],"r":1}'


def test_a_signed_notification_verifies_to_its_text():
    sent = signing.sign("ddp_bookstore.book", TEXT)
    assert sent.endswith(":" + TEXT) and len(sent) == len(TEXT) + payload.TAG_LENGTH + 1
    assert signing.verify("ddp_bookstore.book", sent) == TEXT
    # The same text signs the same way: a replay under the same key sends the original.
    assert signing.sign("ddp_bookstore.book", TEXT) == sent


def test_the_tag_is_django_salted_hmac_of_channel_and_text():
    """The key is derived once per secret, as ``salted_hmac`` derives it each time: tags of
    captures recorded before stay valid, and servers of either version agree."""
    with override_settings(SECRET_KEY="a key", SECRET_KEY_FALLBACKS=[]):
        digest = salted_hmac(signing.KEY_SALT, "ddp_a\0" + TEXT, algorithm="sha256").digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert signing.tag("ddp_a", TEXT) == expected
        assert signing.tag("ddp_a", TEXT, secret="another") != expected


@pytest.mark.parametrize(
    ("notification", "reason"),
    [
        (TEXT, "no signature"),
        ("", "no signature"),
        ("A" * 43 + ":" + TEXT, "a wrong signature"),
        # Another channel's tag: an event cannot be replayed onto another channel.
        (signing.sign("ddp_bookstore.author", TEXT), "a wrong signature"),
        # Any change to the text after signing.
        (signing.sign("ddp_bookstore.book", TEXT).replace('"r":1', '"r":2'), "a wrong signature"),
        ("#" * 43 + ":" + TEXT, "no signature"),
    ],
)
def test_a_missing_or_wrong_tag_is_refused(notification, reason):
    with pytest.raises(signing.Refused, match=f"^{reason}$"):
        signing.verify("ddp_bookstore.book", notification)


def test_the_key_follows_secret_key_and_its_fallbacks():
    with override_settings(SECRET_KEY="old key", SECRET_KEY_FALLBACKS=[]):
        old = signing.sign("ddp_a", TEXT)
    with override_settings(SECRET_KEY="new key", SECRET_KEY_FALLBACKS=[]):
        with pytest.raises(signing.Refused):
            signing.verify("ddp_a", old)
        new = signing.sign("ddp_a", TEXT)
    assert new != old
    # Mid-rotation: servers already on the new key accept the old one's notifications...
    with override_settings(SECRET_KEY="new key", SECRET_KEY_FALLBACKS=["spare", "old key"]):
        assert signing.verify("ddp_a", old) == TEXT
        # ...and still sign with the new one, which servers keeping the old key as a
        # fallback accept too.
        assert signing.sign("ddp_a", TEXT) == new
    with override_settings(SECRET_KEY="old key", SECRET_KEY_FALLBACKS=["new key"]):
        assert signing.verify("ddp_a", new) == TEXT


def test_every_signed_notification_fits_postgresql_limit():
    for fields in ({"body": "x" * (MAX_PAYLOAD - 200)}, {"body": "é" * 100_000}):
        for text in encode(Event("bookstore.book", "1", fields, frozenset(), 1)):
            assert len(signing.sign("ddp_" + "c" * 59, text).encode()) < 8000


def code_strings(path):
    """Every string literal of a module but its docstrings, f-strings' parts included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    strings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # f"NOTIFY {name}" reads as "NOTIFY {}"
            parts = (p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
            strings.append("".join(parts))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                strings.append(node.value)
    return strings


#: A statement that sends a notification: ``pg_notify(...)``, or ``NOTIFY channel`` with
#: or without ``, 'payload'`` (and not prose that starts with the word).
SENDS = re.compile(
    r"pg_notify\s*\(|^\s*NOTIFY\s+(\w+|\"[^\"]*\"|\{\w*\})\s*(,|;|$)",
    re.IGNORECASE | re.MULTILINE,
)


def test_every_notification_is_sent_by_signing_alone():
    """One statement sends notifications, behind :func:`signing.notify_all`, so none goes
    out unsigned or in a shape the listener was not written for."""
    package = Path(ddp.__file__).resolve().parent
    senders = {
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if any(SENDS.search(text) for text in code_strings(path))
    }
    assert senders == {"ddp/bus/signing.py"}
