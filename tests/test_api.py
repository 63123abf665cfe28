"""The registry: names, autodiscovery, routing, parameter checks."""

import pytest

from bookstore.models import Author, Book
from ddp import MeteorError
from ddp.api import API, Collection, Context, Publication, Registry, bind_params


def test_autodiscovery_finds_every_apps_ddp_module():
    API.autodiscover()
    assert {"bookstore.book", "bookstore.author", "testapp.article"} <= set(API.collections)
    assert {"AllBooks", "BooksByAuthorEmail", "Articles"} <= set(API.publications)
    assert {"bookstore.addBook", "test.echo"} <= set(API.methods)


def test_collection_name_defaults_to_app_label_and_model_name():
    class Books(Collection):
        model = Book

    class Named(Collection):
        model = Book
        name = "books"

    assert Books.get_name() == "bookstore.book"
    assert Named.get_name() == "books"


def test_register_refuses_what_it_cannot_publish():
    registry = Registry()

    class NoModel(Collection):
        pass

    with pytest.raises(TypeError, match="no model"):
        registry.register(NoModel)
    with pytest.raises(TypeError, match="not a Collection or Publication"):
        registry.register([object])


def test_queries_route_to_collections():
    registry = Registry()

    class Authors(Collection):
        model = Author

    class Pub(Publication):
        queries = [Author.objects.all(), (Book.objects.all(), "elsewhere")]

    registry.register([Authors, Pub])
    with pytest.raises(LookupError, match="elsewhere"):
        registry.resolve_queries(Pub(Context("c")), ())

    class Elsewhere(Collection):
        model = Book
        name = "elsewhere"

    registry.register(Elsewhere)
    pairs = registry.resolve_queries(Pub(Context("c")), ())
    assert [collection for _, collection in pairs] == [Authors, Elsewhere]


def test_builtin_meteor_subscriptions_publish_nothing():
    registry = Registry()
    for name in ("meteor_autoupdate_clientVersions", "meteor.loginServiceConfiguration"):
        assert registry.resolve_queries(registry.publications[name](Context("c")), ()) == []


def test_bind_params_raises_match_failed():
    def method(this, a, b=2):
        pass

    bind_params(method, (1,))
    bind_params(method, (1, 3))
    with pytest.raises(MeteorError) as info:
        bind_params(method, (1, 2, 3))
    assert (info.value.error, info.value.reason) == (400, "Match failed")


def test_context_user_id_is_none_when_anonymous():
    from django.contrib.auth.models import AnonymousUser

    assert Context("c", user=AnonymousUser()).user_id is None
