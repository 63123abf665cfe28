"""One client's life: its DDP state, subscriptions, merge box, user and method calls.

The transport owns the socket and the green threads; a session only sees text:

* the transport's reader calls :meth:`Session.receive` for every text frame. Replies
  the protocol core makes by itself (``connected``, ``pong``, ``error``) go out at once,
  so a ping is answered even while a long method runs (PROTOCOL.md H2);
* the requests it returns (``sub``, ``unsub``, ``method``) go through the transport's
  inbox to :meth:`Session.handle`, one at a time and in arrival order (R7);
* publications and methods run through ``run_db``, the bounded pool of database
  workers, so the number of PostgreSQL connections never follows the number of clients.

Every message goes out through ``send(text)``, which must queue it in order and never
block on a slow client.
"""

import logging
from dataclasses import replace

from django.contrib.auth.models import AnonymousUser
from django.db import transaction

from ddp.api import API, Context, bind_params
from ddp.protocol import (
    CLOSE,
    MISSING,
    MergeBox,
    MeteorError,
    Method,
    NoSub,
    Ready,
    Result,
    ServerConnection,
    Sub,
    Unsub,
    Updated,
    encode,
    sanitize,
)
from ddp.serialize import documents

logger = logging.getLogger("ddp.session")


def run_method(func, this, params):
    """Run one method in its own transaction: an exception rolls its writes back."""
    bind_params(func, params)
    with transaction.atomic():
        return func(this, *params)


class Session:
    def __init__(self, send, close, run_db, registry=API):
        self.connection = ServerConnection()
        self.box = MergeBox()
        self.context = Context(connection_id=self.connection.session_id, user=AnonymousUser())
        #: Active named subscriptions: id -> (publication name, params).
        self.subs = {}
        self.registry = registry
        self._send = send
        self._close = close
        self._run_db = run_db

    def send(self, message):
        self._send(encode(message))

    def send_all(self, messages):
        for message in messages:
            self.send(message)

    def receive(self, text):
        """Feed one text frame; return the requests :meth:`handle` must run, in order."""
        requests = []
        for item in self.connection.receive(text):
            if item is CLOSE:
                self._close()
            elif isinstance(item, (Sub, Unsub, Method)):
                requests.append(item)
            else:
                self.send(item)
        return requests

    def handle(self, request):
        if isinstance(request, Sub):
            self._sub(request)
        elif isinstance(request, Unsub):
            self._unsub(request)
        else:
            self._method(request)

    # Subscriptions ---------------------------------------------------------------

    def _sub(self, sub):
        if sub.id in self.subs:
            return  # S3: a sub id already active is ignored, which matters on reconnect
        publication = self.registry.publications.get(sub.name)
        if publication is None:
            self.send(NoSub(sub.id, MeteorError(404, f"Subscription '{sub.name}' not found")))
            return
        self.subs[sub.id] = (sub.name, sub.params)
        try:
            self._run_db(self._publish, sub.id, publication, sub.params)
        except Exception as exc:
            if not isinstance(exc, MeteorError):
                logger.exception("Publication %r failed", sub.name)
            del self.subs[sub.id]
            self.send_all(self.box.remove_subscription(("N", sub.id)))
            self.send(NoSub(sub.id, sanitize(exc)))
            return
        self.send(Ready((sub.id,)))

    def _publish(self, sub_id, publication, params):
        """Run in a database worker: stream the initial documents through the merge box."""
        handle = ("N", sub_id)
        instance = publication(self.context)
        for queryset, collection in self.registry.resolve_queries(instance, params):
            name = collection.get_name()
            for doc_id, fields in documents(queryset, collection):
                self.send_all(self.box.added(handle, name, doc_id, fields))

    def _unsub(self, unsub):
        if unsub.id is not MISSING and self.subs.pop(unsub.id, None) is not None:
            self.send_all(self.box.remove_subscription(("N", unsub.id)))
        self.send(NoSub(unsub.id))

    # Methods ---------------------------------------------------------------------

    def _method(self, call):
        self._send(self._result(call))
        self.send(Updated((call.id,)))

    def _result(self, call):
        """The encoded ``result`` of one call; errors become Meteor errors, never tracebacks."""
        func = self.registry.methods.get(call.method)
        if func is None:
            return encode(
                Result(call.id, error=MeteorError(404, f"Method '{call.method}' not found"))
            )
        seed = None if call.random_seed is MISSING else call.random_seed
        this = replace(self.context, random_seed=seed)
        try:
            # Encoding inside the try: a return value EJSON cannot carry is a 500 too.
            return encode(Result(call.id, result=self._run_db(run_method, func, this, call.params)))
        except Exception as exc:
            if not isinstance(exc, MeteorError):
                logger.exception("Method %r failed", call.method)
            return encode(Result(call.id, error=sanitize(exc)))
