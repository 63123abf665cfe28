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

import inspect
from dataclasses import dataclass, field

from django.db.models import Model, QuerySet
from django.utils.module_loading import autodiscover_modules

from ddp.protocol import MeteorError


class Collection:
    """Publishes one model as one DDP collection.

    ``name`` defaults to ``"<app_label>.<model_name>"``. ``fields`` limits the published
    fields to the listed model field names (the primary key is always the document id);
    ``exclude`` drops fields from the default of every concrete and many-to-many field.
    """

    model: type[Model] = None
    name: str = None
    fields: tuple = None
    exclude: tuple = ()

    @classmethod
    def get_name(cls):
        if cls.name:
            return cls.name
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
    user: object = None
    #: ``randomSeed`` of the method call being run, if the client sent one.
    random_seed: str = None
    #: Free-form per-connection data a project may keep across calls.
    data: dict = field(default_factory=dict)

    @property
    def user_id(self):
        """The user's id as a string, or ``None`` for an anonymous connection."""
        if self.user is None or not getattr(self.user, "is_authenticated", False):
            return None
        return str(self.user.pk)


class Publication:
    """A named set of querysets a client subscribes to with ``sub``.

    Either set ``queries`` (static, the same for every subscriber) or override
    ``get_queries(self, *params)``; the subscription's ``params`` are passed positionally.
    Each entry is a queryset, published to its model's registered collection, or a
    ``(queryset, collection_name)`` pair that routes it to another collection. The name
    defaults to the class name. ``self.this`` is the connection's :class:`Context`.
    """

    name: str = None
    queries: list = None

    def __init__(self, this):
        self.this = this

    @property
    def user(self):
        return self.this.user

    @classmethod
    def get_name(cls):
        return cls.name or cls.__name__

    def get_queries(self, *params):
        return list(self.queries or [])


class NoDocuments(Publication):
    """Answers ``ready`` with no documents: for subscriptions every Meteor app opens."""

    queries = []


class Registry:
    """Collections, publications and methods by name: one instance, :data:`API`."""

    def __init__(self):
        self.collections = {}
        self.publications = {}
        self.methods = {}
        self._discovered = False
        # A Meteor front end opens these by itself; a nosub would make it retry or wait
        # forever, and a document would make autoupdate reload the page.
        for builtin in ("meteor_autoupdate_clientVersions", "meteor.loginServiceConfiguration"):
            self.publications[builtin] = type(builtin, (NoDocuments,), {"name": builtin})

    def register(self, items):
        """Register Collection and Publication subclasses (one or a list)."""
        if not isinstance(items, (list, tuple)):
            items = [items]
        for item in items:
            if isinstance(item, type) and issubclass(item, Collection):
                if item.model is None:
                    raise TypeError(f"{item.__name__} has no model")
                self.collections[item.get_name()] = item
            elif isinstance(item, type) and issubclass(item, Publication):
                self.publications[item.get_name()] = item
            else:
                raise TypeError(f"Cannot register {item!r}: not a Collection or Publication")
        return items

    def method(self, name):
        """Decorator registering ``func(this, *params)`` as the DDP method ``name``."""

        def decorator(func):
            self.methods[name] = func
            return func

        return decorator

    def autodiscover(self):
        """Import every installed app's ``ddp.py`` (once)."""
        if not self._discovered:
            autodiscover_modules("ddp")
            self._discovered = True

    def collections_for_model(self, model):
        """Every collection that publishes ``model`` (or its concrete parent)."""
        concrete = model._meta.concrete_model
        return [c for c in self.collections.values() if c.model is model or c.model is concrete]

    def collection_for_model(self, model):
        """The collection a plain queryset of ``model`` goes to: the one named
        ``<app_label>.<model_name>`` if registered, else the first registered."""
        collections = self.collections_for_model(model)
        meta = model._meta
        default = f"{meta.app_label}.{meta.model_name}"
        for collection in collections:
            if collection.get_name() == default:
                return collection
        return collections[0] if collections else None

    def resolve_queries(self, publication, params):
        """Pair each query of a publication instance with its Collection class."""
        bind_params(type(publication).get_queries, params)
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
            pairs.append((queryset, collection))
        return pairs


def bind_params(func, params, skip=1):
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
API = Registry()
