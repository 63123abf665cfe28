"""Meteor's accounts over DDP, against ``django.contrib.auth``.

Add ``"ddp.accounts"`` to ``INSTALLED_APPS`` (after ``django.contrib.auth`` and ``ddp``)
and migrate: Meteor clients can then ``login`` with a password (the SHA-256 digest Meteor
sends, or plain text) or a resume token, ``logout``, ``getNewToken``,
``removeOtherTokens``, ``logoutOtherClients``, ``changePassword`` and, when
``DDP["ACCOUNTS_ALLOW_CREATE"]`` is true, ``createUser``; and the ``users`` collection
carries the logged-in user's own document.
"""
