"""The registry of what a project publishes over DDP.

A project lists its collections, publications and methods in a ``ddp.py`` module of
any installed app::

    from ddp.api import API, Collection, Publication

    class Book(Collection):
        model = models.Book

    class AllBooks(Publication):
        queries = [models.Book.objects.all()]

    API.register([Book, AllBooks])

    @API.method("bookstore.addBook")
    def add_book(this, title):
        return str(models.Book.objects.create(title=title).pk)

``API.autodiscover()`` imports every installed app's ``ddp.py`` once. The registry holds
classes and functions only; per-connection state lives in :mod:`ddp.session`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

from django.db.models import Model, Q, QuerySet
from django.utils.module_loading import autodiscover_modules

from ddp.protocol import PUBLICATION_STRATEGIES, SERVER_MERGE, MeteorError

#: What a publication's queries hold: a queryset, published to its model's collection, or a
#: ``(queryset, collection name)`` pair.
QueryEntry: TypeAlias = "QuerySet | tuple[QuerySet, str]"
#: What :meth:`Registry.register` takes.
Registrable: TypeAlias = "type[Collection] | type[Publication]"
F = TypeVar("F", bound=Callable[..., Any])


class Collection:
    """Publishes one model as one DDP collection.

    ``name`` defaults to ``"<app_label>.<model_name>"``. ``fields`` limits the published
    fields to the listed model field names (the primary key is always the document id);
    ``exclude`` drops fields from the default of every concrete and many-to-many field.

    ``user_rel`` restricts the documents a user sees: a lookup (or a list of them, any
    one of which may match) from the model to the user, such as ``"owner"`` or
    ``"team__members"``. Every query of the collection is filtered with it, for the
    initial documents and for every live change; anonymous connections see none.

    ``strategy`` is what each connection remembers of the documents it sent, as Meteor's
    ``Meteor.server.setPublicationStrategy(name, strategy)`` (PROTOCOL.md MB7):

    * ``"SERVER_MERGE"`` (the default): every field, so that several subscriptions of one
      client can publish the same document and only differences are sent;
    * ``"NO_MERGE_MULTI"``: only the ids and how many subscriptions publish each; a
      document goes when the last lets go, a live change sends all its fields;
    * ``"NO_MERGE"``: only the ids each subscription sent; for a collection that one
      subscription at a time publishes (two would each send, and remove, the document).
    """

    model: ClassVar[type[Model] | None] = None
    name: ClassVar[str | None] = None
    fields: ClassVar[Sequence[str] | None] = None
    exclude: ClassVar[Sequence[str]] = ()
    user_rel: ClassVar[str | Sequence[str] | None] = None
    strategy: ClassVar[str] = SERVER_MERGE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.strategy in PUBLICATION_STRATEGIES:
            return
        if cls.strategy == "NO_MERGE_NO_HISTORY":
            raise ValueError(
                f"{cls.__qualname__}.strategy: NO_MERGE_NO_HISTORY is not supported. A live "
                "change here is a whole row, so the server must remember which ids it sent "
                "to tell added from changed, or to remove a row that leaves a query; use "
                "NO_MERGE, which keeps only those ids."
            )
        choices = ", ".join(repr(choice) for choice in PUBLICATION_STRATEGIES)
        raise ValueError(f"{cls.__qualname__}.strategy is {cls.strategy!r}, not one of {choices}")

    @classmethod
    def restrict(cls, queryset: QuerySet, user: Any) -> QuerySet:
        """``queryset`` limited to what ``user`` may see through ``user_rel``."""
        if cls.user_rel is None:
            return queryset
        if user is None or not user.is_authenticated:
            return queryset.none()
        lookups = [cls.user_rel] if isinstance(cls.user_rel, str) else cls.user_rel
        condition = Q()
        for lookup in lookups:
            condition |= Q(**{lookup: user})
        return queryset.filter(condition).distinct()

    @classmethod
    def get_name(cls) -> str:
        """The collection's DDP name: ``name``, else ``"<app_label>.<model_name>"``."""
        if cls.name:
            return cls.name
        assert cls.model is not None, f"{cls.__name__} has no model"
        meta = cls.model._meta
        return f"{meta.app_label}.{meta.model_name}"


@dataclass
class Context:
    """What a publication or method knows of the connection it runs for (Meteor's ``this``).

    It is passed explicitly, never kept in greenlet-locals, so code that runs it from
    another green worker or a test sees the same values.
    """

    #: The connection's session id (``connected.session``).
    connection_id: str
    #: The connection's Django user: ``AnonymousUser`` until accounts log one in.
    user: Any = None
    #: ``randomSeed`` of the method call being run, if the client sent one.
    random_seed: str | None = None
    #: The client's address (Meteor's ``clientAddress``; see ``DDP["TRUSTED_PROXIES"]``).
    client_address: str | None = None
    #: Some headers of the client's handshake, by lowercase name (Meteor's ``httpHeaders``).
    http_headers: dict[str, str] = field(default_factory=dict)
    #: Free-form per-connection data a project may keep across calls.
    data: dict[str, Any] = field(default_factory=dict)

    #: The hash of the login token the connection rides on (``ddp.accounts``), or None.
    login_token: str | None = None
    #: Set by :meth:`set_user` during a method: ``(user, login token hash)``.
    new_login: tuple[Any, str | None] | None = None

    @property
    def user_id(self) -> str | None:
        """The user's id as a string, or ``None`` for an anonymous connection."""
        if self.user is None or not getattr(self.user, "is_authenticated", False):
            return None
        return str(self.user.pk)

    def set_user(self, user: Any, token_hash: str | None = None) -> None:
        """Log the connection in as ``user`` (``None``: out), as Meteor's ``setUserId``.

        Takes effect when the method returns and before its ``result`` goes out: every
        subscription is re-run for the new user and only the differences are sent.
        ``token_hash`` is the login token the connection now rides on; the connection is
        closed if that token is revoked.
        """
        self.new_login = (user, token_hash)


class Publication:
    """A named set of querysets a client subscribes to with ``sub``.

    Either set ``queries`` (static, the same for every subscriber) or override
    ``get_queries(self, *params)``; the subscription's ``params`` are passed positionally.
    Each entry is a queryset, published to its model's registered collection, or a
    ``(queryset, collection_name)`` pair that routes it to another collection. The name
    defaults to the class name. ``self.this`` is the connection's :class:`Context`.
    """

    name: ClassVar[str | None] = None
    queries: ClassVar[list[QueryEntry] | None] = None
    #: Anonymous connections get no documents, and ``ready``: once they log in, the
    #: subscription is re-run and fills (a ``nosub`` would have lost it for good, S12).
    login_required: ClassVar[bool] = False

    def __init__(self, this: Context) -> None:
        self.this = this

    @property
    def user(self) -> Any:
        """The connection's user (``self.this.user``)."""
        return self.this.user

    @classmethod
    def get_name(cls) -> str:
        """The publication's DDP name: ``name``, else the class name."""
        return cls.name or cls.__name__

    def get_queries(self, *params: Any) -> list[QueryEntry]:
        """The querysets to publish for a subscription with these parameters."""
        return list(self.queries or [])


class NoDocuments(Publication):
    """Answers ``ready`` with no documents: for subscriptions every Meteor app opens."""

    queries: ClassVar[list[QueryEntry] | None] = []


class Registry:
    """Collections, publications and methods by name: one instance, :data:`API`."""

    def __init__(self) -> None:
        self.collections: dict[str, type[Collection]] = {}
        self.publications: dict[str, type[Publication]] = {}
        self.methods: dict[str, Callable[..., Any]] = {}
        #: Collection name -> publication strategy, for every collection that does not
        #: use the default (``SERVER_MERGE``); each session's merge box reads it.
        self.strategies: dict[str, str] = {}
        #: ``user -> (collection, id, fields)``: the logged-in user's own document, which
        #: ``ddp.accounts`` publishes to the ``users`` collection (None: no such document).
        self.user_document: Callable[[Any], tuple[str, str, dict[str, Any]] | None] | None = None
        #: ``hashes -> the valid ones``, and ``() -> None`` deleting expired tokens: how
        #: ``ddp.accounts`` lets a server re-check and sweep login tokens (None: no accounts).
        self.valid_tokens: Callable[..., Any] | None = None
        self.sweep_tokens: Callable[[], Any] | None = None
        #: Publication names registered more than once: name -> every class registered under
        #: it, in order. The last one is served, as before; ``ddp_publications --check``
        #: reports the others, which would otherwise vanish without a word.
        self.duplicates: dict[str, list[type[Publication]]] = {}
        self._discovered = False
        # A Meteor front end opens these by itself; a nosub would make it retry or wait
        # forever, and a document would make autoupdate reload the page.
        for builtin in ("meteor_autoupdate_clientVersions", "meteor.loginServiceConfiguration"):
            self.publications[builtin] = type(builtin, (NoDocuments,), {"name": builtin})

    def register(self, items: Registrable | Sequence[Registrable]) -> Sequence[Registrable]:
        """Register Collection and Publication subclasses (one or a list); return them as a
        list."""
        entries: Sequence[Any] = items if isinstance(items, (list, tuple)) else [items]
        for item in entries:
            if isinstance(item, type) and issubclass(item, Collection):
                if item.model is None:
                    raise TypeError(f"{item.__name__} has no model")
                name = item.get_name()
                self.collections[name] = item
                if item.strategy == SERVER_MERGE:
                    self.strategies.pop(name, None)
                else:
                    self.strategies[name] = item.strategy
            elif isinstance(item, type) and issubclass(item, Publication):
                name = item.get_name()
                previous = self.publications.get(name)
                if previous is not None and previous is not item:
                    self.duplicates.setdefault(name, [previous]).append(item)
                self.publications[name] = item
            else:
                raise TypeError(f"Cannot register {item!r}: not a Collection or Publication")
        return entries

    def method(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``func(this, *params)`` as the DDP method ``name``."""

        def decorator(func: F) -> F:
            self.methods[name] = func
            return func

        return decorator

    def autodiscover(self) -> None:
        """Import every installed app's ``ddp.py`` (once)."""
        if not self._discovered:
            autodiscover_modules("ddp")
            self._discovered = True

    def collections_for_model(self, model: type[Model]) -> list[type[Collection]]:
        """Every collection that publishes ``model`` (or its concrete parent)."""
        concrete = model._meta.concrete_model
        return [c for c in self.collections.values() if c.model is model or c.model is concrete]

    def collection_for_model(self, model: type[Model]) -> type[Collection] | None:
        """The collection a plain queryset of ``model`` goes to: the one named
        ``<app_label>.<model_name>`` if registered, else the first registered."""
        collections = self.collections_for_model(model)
        meta = model._meta
        default = f"{meta.app_label}.{meta.model_name}"
        for collection in collections:
            if collection.get_name() == default:
                return collection
        return collections[0] if collections else None

    def resolve_queries(
        self, publication: Publication, params: Sequence[Any]
    ) -> list[tuple[QuerySet, type[Collection]]]:
        """Pair each query of a publication instance with its Collection class, each
        queryset restricted to what the connection's user may see."""
        bind_params(type(publication).get_queries, params)
        user = publication.this.user
        if publication.login_required and not (user is not None and user.is_authenticated):
            return []
        pairs = []
        for entry in publication.get_queries(*params):
            if isinstance(entry, tuple):
                queryset, name = entry
                collection = self.collections.get(name)
                if collection is None:
                    raise LookupError(f"Collection {name!r} is not registered")
            else:
                queryset = entry
                collection = self.collection_for_model(queryset.model)
                if collection is None:
                    raise LookupError(f"No collection is registered for {queryset.model}")
            if not isinstance(queryset, QuerySet):
                raise TypeError(f"{publication.get_name()} returned {queryset!r}, not a QuerySet")
            pairs.append((collection.restrict(queryset, user), collection))
        return pairs


class CommittedError(MeteorError):
    """A Meteor error sent after the method's writes are committed, not rolled back.

    For failures that must leave a trace: a failed login still lets Django's
    ``user_login_failed`` receivers (throttling, audit) record it.
    """


def bind_params(func: Callable[..., Any], params: Sequence[Any], skip: int = 1) -> None:
    """Check ``params`` against ``func``'s signature as Meteor's ``check()`` would.

    Raises ``MeteorError(400, "Match failed")`` for a wrong number of parameters, so a
    client's mistake is told apart from an exception inside the project's code.
    """
    signature = inspect.signature(func)
    names = list(signature.parameters.values())[skip:]
    try:
        signature.replace(parameters=names).bind(*params)
    except TypeError:
        raise MeteorError(400, "Match failed") from None


#: The project's registry.
API: Registry = Registry()
