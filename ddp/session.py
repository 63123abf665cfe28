"""One client's life: its DDP state, subscriptions, merge box, user and method calls.

The transport owns the socket and the green threads; a session only sees text:

* the transport's reader calls :meth:`Session.receive` for every text frame. Replies
  the protocol core makes by itself (``connected``, ``pong``, ``error``) go out at once,
  so a ping is answered even while a long method runs (PROTOCOL.md H2);
* the requests it returns (``sub``, ``unsub``, ``method``) go through the transport's
  inbox to :meth:`Session.handle`, one at a time and in arrival order (R7);
* publications and methods run through ``run_db``, the bounded pool of database
  workers, so the number of PostgreSQL connections never follows the number of clients.
  A worker never waits on a client: a publication's initial documents are read a page
  per job, and the session waits for room in the client's buffer between jobs (``room``).

Every message goes out through ``send(text)``, which must queue it in order and never
block on a slow client. The session counts them, pings and pongs left out (:attr:`sent`):
a client that comes back after a drop says how many it got, and only when the two agree
may it have its session back (``resume``, Meteor 3.4's session resumption). Whoever
carries the session then gives it its new callbacks (:meth:`Session.attach`).
"""

import time
from collections import deque
from dataclasses import dataclass, replace

from django.contrib.auth.models import AnonymousUser
from django.db import transaction

from ddp import metrics
from ddp.addresses import client_address
from ddp.api import API, CommittedError, Context, bind_params
from ddp.bus.audience import Change
from ddp.bus.matching import compile_subscription
from ddp.bus.producer import commit_position, reading_database, recording
from ddp.bus.producer import wrote as producer_wrote
from ddp.bus.registry import subscription_key
from ddp.conf import ddp_settings
from ddp.peer import http_headers
from ddp.protocol import (
    CLOSE,
    MISSING,
    USERS,
    Added,
    MergeBox,
    MeteorError,
    Method,
    NoSub,
    Ready,
    Removed,
    Result,
    Resume,
    ServerConnection,
    Sub,
    SubscriptionOwner,
    Unsub,
    Updated,
    dumps,
    encode,
    sanitize,
    to_ejson,
)
from ddp.randomness import method_random
from ddp.ratelimit import (
    POLICY_VIOLATION,
    TOO_MANY_MESSAGES,
    ConnectionLimits,
    too_many_pending_methods,
)
from ddp.serialize import Pages, documents


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Marker:
    """A queue item that carries nothing: told apart by identity, named in its repr."""

    name: str

    def __repr__(self):
        return self.name


#: Put in the inbox to make the worker apply bus changes while no request comes.
WAKE = Marker("WAKE")
#: Queued instead of changes after the listener was lost: re-run every subscription.
RESYNC = Marker("RESYNC")
#: Documents of an initial send between two waits for room in the client's buffer.
ROOM_EVERY = 100
#: Documents of an initial send read by one database job: what memory holds of it at once.
PAGE_SIZE = 500
#: How the messages a resuming client does not count begin (the encoder puts ``msg`` first).
UNCOUNTED = ('{"msg":"ping"', '{"msg":"pong"')


def run_method(func, this, params):
    """Run one method in its own transaction: an exception rolls its writes back.

    Returns ``(result, fence)``: what its caller must wait for before ``updated``, to see
    the method's own writes. ``True``: its writes sent changes; a WAL position: it wrote
    while the replication reader announces every write (database capture: its writers
    send nothing), and the reader must have announced up to there; ``False``: nothing.
    """
    bind_params(func, params)
    committed_error = None
    # The client stub's ids (a MeteorIdField) are drawn from the call's randomSeed (R8).
    with transaction.atomic(), method_random(this.random_seed), recording() as writes:
        try:
            result = func(this, *params)
        except CommittedError as exc:
            committed_error = exc
        wrote = reading_database() and producer_wrote()
    if committed_error is not None:
        raise committed_error
    return result, commit_position() if wrote else writes.sent


def collect(pairs):
    """``{collection: {id: fields}}`` of ``(queryset, Collection)`` pairs, for a merge box."""
    docs = {}
    for queryset, collection in pairs:
        docs.setdefault(collection.get_name(), {}).update(documents(queryset, collection))
    return docs


def encode_counted(message):
    """Encode a message, and count it: the encoder is the cost to share (``/metrics``)."""
    metrics.inc("ddp_messages_encoded_total")
    return encode(message)


def shared_key(message, event):
    """What makes ``message`` the same text for every client of ``event``, or None.

    A merge box builds its messages from the event's own values when it has nothing of
    its own to add; those are the same objects as in the event, so an identity check says
    whether another client's identical message can be reused.
    """
    if isinstance(message, Removed):
        return ("removed",)
    fields = message.fields or {}
    if not all(event.fields.get(key) is value for key, value in fields.items()):
        return None
    if isinstance(message, Added):
        return ("added", tuple(fields)) if len(fields) == len(event.fields) else None
    return ("changed", tuple(fields), tuple(message.cleared))


def _holds_nul(params):
    """Whether a string anywhere in ``params`` (a dict key too) holds U+0000; iterative, as
    params may nest deeper than the stack allows."""
    stack = [params]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return False


def _size(params):
    """Bytes of ``params`` as JSON; infinite when they nest deeper than EJSON can go."""
    try:
        return len(dumps(to_ejson(list(params))))
    except RecursionError:
        return float("inf")


@dataclass(frozen=True)
class Revoked:
    """Queued for a session when a login token it may ride on was deleted."""

    token_hash: str


@dataclass
class Subscription:
    """One named subscription of this session."""

    name: str
    params: tuple
    #: What it publishes in the merge box.
    owner: SubscriptionOwner
    key: str = ""
    #: Names of the collections its queries publish to.
    collections: frozenset = frozenset()
    #: Its registry row id; events from writers that could not see it are not for it.
    registry: int = 0
    #: The collections a query of it is reading now (see ``Session._querying``).
    querying: frozenset = frozenset()


class Session:
    def __init__(
        self,
        send,
        close,
        run_db,
        wake=None,
        bus=None,
        registry=API,
        room=None,
        changed=None,
        environ=None,
        resume=None,
        clock=time.monotonic,
    ):
        self.connection = ServerConnection()
        # The clock ``room`` measures its deadline on: the runtime's driver's.
        self._clock = clock
        # Per collection, what the box remembers of what it sent (Collection.strategy).
        self.box = MergeBox(registry.strategies)
        environ = environ or {}
        self.context = Context(
            connection_id=self.connection.session_id,
            user=AnonymousUser(),
            client_address=client_address(environ),
            http_headers=http_headers(environ),
        )
        #: Active named subscriptions by id.
        self.subs = {}
        self.registry = registry
        self.bus = bus
        #: What the bus handed over for the worker, in arrival order: a ``Change``, a
        #: ``Revoked`` token, or ``RESYNC``.
        self.changes = deque()
        #: Subscriptions to re-run, as a writer could not match a change against them.
        self._reruns = set()
        self._run_db = run_db
        #: Messages handed to ``send``, pings and pongs left out: what a resuming client
        #: must say it received.
        self.sent = 0
        # ``resume(Resume)`` hands the session a client names back, and says whether it did;
        # without it, or when it did not, this session's own ``connected`` goes out.
        self._resume = resume
        self.attach(send, close, wake, room, changed)
        #: Set when the login token the connection rides on is revoked: it is closing, and
        #: no request of it runs from then on.
        self.revoked = False
        #: Set when a publication's initial send stopped half way (the connection was
        #: ending): the client lacks documents, so its session is not to be resumed.
        self.interrupted = False
        #: What this client may still ask (DDP["RATE_LIMITS"], ["MESSAGES_PER_SECOND"], ...).
        self.limits = ConnectionLimits.from_settings(ddp_settings)

    def attach(self, send, close, wake=None, room=None, changed=None):
        """Give the session the callbacks of what carries it now: a connection, or the
        holder that keeps it for a client that may come back (:mod:`ddp.server.resumption`).
        """
        self._sink = send
        self._close = close
        self._wake = wake or (lambda: None)
        # Told of each plain bus change queued; the transport may apply it at once when the
        # session is idle (:meth:`apply_changes`) rather than wake a worker. Else: wake.
        self._changed = changed or self._wake
        # ``room(deadline)`` blocks a publication's initial send while the client's buffer
        # is full, and says whether the send may go on (see :meth:`_publish`); the
        # transport provides it.
        self._room = room or (lambda deadline: True)

    @property
    def pending(self):
        """Whether bus changes or re-runs wait for a worker."""
        return bool(self.changes or self._reruns)

    def _send(self, text):
        if not text.startswith(UNCOUNTED):
            self.sent += 1
        self._sink(text)

    def send(self, message):
        self._track(message)
        self._send(encode_counted(message))

    def _track(self, message):
        """Tell the bus which documents this client holds: a change to one of them is
        this session's business even when its row has left every subscription here."""
        if self.bus is None:
            return
        if isinstance(message, Added):
            self.bus.audience.hold(self, message.collection, message.id)
        elif isinstance(message, Removed):
            self.bus.audience.release(self, message.collection, message.id)

    def _querying(self, state, collections):
        """``state``'s query of ``collections`` starts (a non-empty set) or ends (empty):
        meanwhile every change to them comes to this session, to apply after the query,
        since what the query returns may be older."""
        if self.bus is not None:
            self.bus.audience.querying(self, state.querying, -1)
            self.bus.audience.querying(self, collections, 1)
        state.querying = collections

    def send_all(self, messages):
        for message in messages:
            self.send(message)

    def admit(self):
        """Count one inbound frame against the client's message budget.

        False once the client has flooded: its connection is then closing (1008), and nothing
        it sent from the flood on may run.
        """
        if self.limits.flooded:
            return False
        if not self.limits.admit_message():
            self._close(POLICY_VIOLATION, TOO_MANY_MESSAGES)
            return False
        return True

    def receive(self, text):
        """Feed one text frame; return the requests :meth:`handle` must run, in order.

        A method beyond ``DDP["MAX_PENDING_METHODS"]`` unanswered calls is answered here, at
        once, rather than queued: the inbox must not grow with a client that never waits.
        """
        if not self.admit():
            return []
        requests = []
        for item in self.connection.receive(text):
            if item is CLOSE:
                self._close()
            elif isinstance(item, Resume):
                if self._resume is None or not self._resume(item):
                    self.send(item.connected)
            elif isinstance(item, Method) and not self.limits.queue_method():
                error = too_many_pending_methods(self.limits.max_pending_methods)
                self.send(Result(item.id, error=error))
                self.send(Updated((item.id,)))
            elif isinstance(item, (Sub, Unsub, Method)):
                requests.append(item)
            else:
                self.send(item)
        return requests

    def handle(self, request):
        self.apply_changes()
        if self.revoked:
            return  # nothing the client sent runs as the user whose token was revoked
        self._rerun_unsure()
        if request is WAKE:
            return
        if isinstance(request, Sub):
            self._sub(request)
        elif isinstance(request, Unsub):
            self._unsub(request)
        else:
            try:
                self._method(request)
            finally:
                self.limits.method_done()

    # Subscriptions ---------------------------------------------------------------

    def _sub(self, sub):
        if sub.id in self.subs:
            return  # S3: a sub id already active is ignored, which matters on reconnect
        publication = self.registry.publications.get(sub.name)
        if publication is None:
            self.send(NoSub(sub.id, MeteorError(404, f"Subscription '{sub.name}' not found")))
            return
        if _holds_nul(sub.params):
            # PostgreSQL's text and jsonb cannot hold U+0000, which JSON strings may.
            self.send(NoSub(sub.id, MeteorError(400, "Match failed")))
            return
        limit = ddp_settings.MAX_SUBSCRIPTION_PARAMS
        if limit is not None and _size(sub.params) > limit:
            # Every write's matching statement reads every distinct subscription's values.
            reason = f"Subscription parameters over {limit} bytes"
            self.send(NoSub(sub.id, MeteorError(400, reason)))
            return
        # After the 404, as Meteor: an unknown name costs nothing and counts nothing.
        error = self.limits.refuse_subscription(sub.name, self.context, len(self.subs))
        if error is not None:
            self.send(NoSub(sub.id, error))
            return
        state = self.subs[sub.id] = Subscription(sub.name, sub.params, SubscriptionOwner(sub.id))
        try:
            if not self._publish(state, publication):
                # The connection is ending: its teardown releases the subscription.
                self.interrupted = True
                return
        except Exception as exc:
            if not isinstance(exc, MeteorError):
                metrics.log_error(self.connection.session_id, publication=sub.name)
            self._drop(sub.id)
            self.send(NoSub(sub.id, sanitize(exc)))
            return
        finally:
            self._querying(state, frozenset())
        self.send(Ready((sub.id,)))

    def _start(self, state, publication):
        """Run in a database worker: the subscription's queries for the connection's user,
        registered with the bus before any of them runs, so no later change is lost."""
        pairs = self._queries(state, publication)
        state.collections = frozenset(collection.get_name() for _, collection in pairs)
        self._querying(state, state.collections)
        if self.bus is not None:
            state.key = subscription_key(state.name, state.params, self.context.user_id)
            state.registry = self.bus.subscribe(
                self,
                state.key,
                state.name,
                state.params,
                self.context.user_id,
                state.collections,
                lambda: compile_subscription(pairs),
            )
        return pairs

    def _publish(self, state, publication):
        """Send the initial documents through the merge box; False if the connection is
        ending (cut off as a slow consumer, gone, or shutting down) before all went out.

        Database workers read them a page per job; between jobs, this thread waits for
        room in the client's buffer. A large publication goes at the client's pace, not
        its buffer's limit: memory stays bounded, a reading client is not cut off, and
        a client that reads slowly or not at all holds no worker, which every other
        client needs. The whole send has one deadline (``DDP["PUBLISH_TIMEOUT"]``).
        """
        deadline = self._clock() + ddp_settings.PUBLISH_TIMEOUT
        for queryset, collection in self._run_db(self._start, state, publication):
            name = collection.get_name()
            pages = Pages(queryset, collection, PAGE_SIZE)
            while page := self._run_db(pages.next):
                for start in range(0, len(page), ROOM_EVERY):
                    for doc_id, fields in page[start : start + ROOM_EVERY]:
                        self.send_all(self.box.added(state.owner, name, doc_id, fields))
                    if not self._room(deadline):
                        return False
        return True

    def _queries(self, state, publication):
        return self.registry.resolve_queries(publication(self.context), state.params)

    def _drop(self, sub_id):
        """Withdraw a subscription's documents and its interest in the bus."""
        state = self.subs.pop(sub_id)
        self.send_all(self.box.remove_subscription(state.owner))
        self._unsubscribe(state)

    def _unsubscribe(self, state, on="unsub"):
        """Tell the bus; a failure (the database gone mid-``unsub``) is logged, and the
        client is answered all the same: its subscription is gone from this server. A
        registry row left behind costs writers a match until this server stops."""
        if self.bus is None or not state.key:
            return
        try:
            self.bus.unsubscribe(self, state.key, state.collections)
        except Exception:
            metrics.log_error(self.connection.session_id, publication=state.name, on=on)

    def _unsub(self, unsub):
        if unsub.id is not MISSING and unsub.id in self.subs:
            self._drop(unsub.id)
        self.send(NoSub(unsub.id))

    def teardown(self):
        """The connection is gone: forget everything silently (S9), tell the bus."""
        if self.bus is not None:
            self._drop_changes()
            owners = [USERS, *(state.owner for state in self.subs.values())]
            documents = {doc for owner in owners for doc in self.box.documents_of(owner)}
            self.bus.audience.forget(self, documents)
            for state in self.subs.values():
                self._querying(state, frozenset())
                self._unsubscribe(state, on="teardown")
            self.bus.track_token(self, self.context.login_token, None)
        self.subs.clear()

    def push_revoked(self, token_hash):
        """Called by the bus: a login token was deleted. Checked in order with the
        session's own work, so a ``logout`` that deletes its own token does not close
        the connection it just logged out."""
        self.changes.append(Revoked(token_hash))
        self._wake()

    # Logging in and out ------------------------------------------------------------

    def _set_user(self, user, token_hash):
        """Meteor's ``_setUserId`` (MB8): re-run every subscription for the new user and
        send only the differences, the user's own document, then one ``ready``."""
        metrics.log_event(
            "logout" if user is None else "login",
            self.connection.session_id,
            user=(self.context.user if user is None else user).pk,
        )
        if self.bus is not None:
            self.bus.track_token(self, self.context.login_token, token_hash)
        self.context.login_token = token_hash
        self.context.user = user if user is not None else AnonymousUser()
        for sub_id, state in list(self.subs.items()):
            self._unsubscribe(state, on="login")
            publication = self.registry.publications[state.name]
            try:
                docs = self._run_db(self._rerun, state, publication)
            except Exception as exc:
                self._querying(state, frozenset())
                if not isinstance(exc, MeteorError):
                    metrics.log_error(
                        self.connection.session_id, publication=state.name, on="login"
                    )
                self._drop(sub_id)
                self.send(NoSub(sub_id, sanitize(exc)))
                continue
            self.send_all(self.box.replace(state.owner, docs))
            self._querying(state, frozenset())
        users = {}
        if user is not None and self.registry.user_document is not None:
            try:
                collection, doc_id, fields = self._run_db(self.registry.user_document, user)
            except Exception:
                # The login stands; the client lacks its user document until it next logs in.
                metrics.log_error(self.connection.session_id, on="user_document")
            else:
                users = {collection: {doc_id: fields}}
        self.send_all(self.box.replace(USERS, users))
        if self.subs:
            self.send(Ready(tuple(self.subs)))

    def _rerun(self, state, publication):
        """Run in a database worker: register again (the user changed the key), query."""
        return collect(self._start(state, publication))

    # Live changes ----------------------------------------------------------------

    def push_change(self, change):
        """Called by the bus, on the listener's thread: queue a
        :class:`~ddp.bus.audience.Change` and wake the worker."""
        self.changes.append(change)
        self._changed()

    def push_resync(self):
        """The listener was lost: changes queued so far are older than a re-run."""
        self._drop_changes()
        self.changes.append(RESYNC)
        self._wake()

    def _drop_changes(self):
        """Forget the queued changes unapplied, and tell the bus so."""
        collections = {item.event.collection for item in self.changes if isinstance(item, Change)}
        self.changes.clear()
        if self.bus is not None:
            self.bus.audience.settled(self, collections)

    def apply_changes(self, leaving=None):
        """Apply the queued changes. ``leaving``: the login token that the method call
        being answered replaces (a logout, or a login over it), whose revocation closes
        nothing: the call may have made it itself."""
        applied = set()
        while self.changes:
            item = self.changes.popleft()
            if item is RESYNC:
                self._resync()
            elif isinstance(item, Revoked):
                mine = item.token_hash == self.context.login_token
                if mine and item.token_hash != leaving and not self.revoked:
                    self.revoked = True
                    self._close()  # the client reconnects, its resume fails, it logs out
            else:
                applied.add(item.event.collection)
                self._apply(item)
        if applied and self.bus is not None:
            self.bus.audience.settled(self, applied)

    def _apply(self, change):
        event = change.event
        # Without a merge (NO_MERGE_MULTI) each subscription holding the document makes
        # the same ``changed`` of the whole row: the client needs it once. Skipping a
        # message equal to the one just sent is safe under any strategy.
        last = None
        for sub_id, state in self.subs.items():
            if event.collection not in state.collections or event.registry < state.registry:
                continue
            if event.is_unsure(state.key):
                # The writer could not tell: the worker re-runs it (a query, never here).
                self._reruns.add(sub_id)
                self._wake()
                continue
            owner = state.owner
            if event.fields is not None and state.key in event.subs:
                messages = self.box.put(owner, event.collection, event.id, event.fields)
            elif self.box.holds(owner, event.collection, event.id):
                messages = self.box.removed(owner, event.collection, event.id)
            else:
                continue
            for message in messages:
                self._track(message)
                key = shared_key(message, event)
                if key is None or key != last:
                    self._send_shared(message, key, change.texts)
                last = key

    def _send_shared(self, message, key, texts):
        """Send ``message``, encoding it once for every client that gets the same text
        (``key``, from :func:`shared_key`; None: this client's own; ``texts``: the
        change's encodings)."""
        if key is None:
            self._send(encode_counted(message))
            return
        text = texts.get(key)
        if text is None:
            text = texts[key] = encode_counted(message)
        self._send(text)

    def _rerun_unsure(self):
        """Re-run the subscriptions a writer could not match a change against, and send
        the differences: what ``_resync`` does for all of them after a lost listener."""
        while self._reruns:
            sub_id = self._reruns.pop()
            state = self.subs.get(sub_id)
            if state is None:
                continue
            metrics.inc("ddp_match_reruns_total")
            self._rerun_one(state, "rerun")

    def _rerun_one(self, state, on):
        """Query ``state`` again and send the differences; on failure, log and go on."""
        self._querying(state, state.collections)
        try:
            docs = self._run_db(self._current_documents, state)
        except Exception:
            metrics.log_error(self.connection.session_id, publication=state.name, on=on)
            return
        else:
            self.send_all(self.box.replace(state.owner, docs))
        finally:
            self._querying(state, frozenset())

    def _resync(self):
        for state in list(self.subs.values()):
            self._rerun_one(state, "resync")

    def _current_documents(self, state):
        return collect(self._queries(state, self.registry.publications[state.name]))

    # Methods ---------------------------------------------------------------------

    def _method(self, call):
        started = time.monotonic()
        seed = None if call.random_seed is MISSING else call.random_seed
        this = replace(self.context, random_seed=seed)
        text, fence = self._result(call, this)
        if fence and self.bus is not None:
            # The caller must see its own writes before ``updated`` (R4, R5).
            try:
                self.bus.fence(fence)
            except Exception:
                # The writes are committed: answer, though they may reach the client after.
                metrics.log_error(self.connection.session_id, method=call.method, on="fence")
            # A logout deletes its own token, whose revocation may have come meanwhile.
            leaving = self.context.login_token if this.new_login is not None else None
            self.apply_changes(leaving)
        if this.new_login is not None:
            # The data of the new user, and the re-sent ``ready``, go before ``result``.
            self._set_user(*this.new_login)
        self._send(text)
        self.send(Updated((call.id,)))
        metrics.observe("ddp_method_duration_seconds", time.monotonic() - started)

    def _result(self, call, this):
        """The encoded ``result`` of one call, and whether its writes sent changes.

        Errors become Meteor errors, never tracebacks."""
        func = self.registry.methods.get(call.method)
        if func is None:
            error = MeteorError(404, f"Method '{call.method}' not found")
            return encode_counted(Result(call.id, error=error)), False
        error = self.limits.refuse_method(call.method, this)
        if error is not None:
            return encode_counted(Result(call.id, error=error)), False
        try:
            value, notified = self._run_db(run_method, func, this, call.params)
            # Encoding inside the try: a return value EJSON cannot carry is a 500 too.
            return encode_counted(Result(call.id, result=value)), notified
        except Exception as exc:
            this.new_login = None  # a failed method logs nobody in or out
            if not isinstance(exc, MeteorError):
                metrics.log_error(self.connection.session_id, method=call.method)
            return encode_counted(Result(call.id, error=sanitize(exc))), False
