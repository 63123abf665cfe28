"""Model fields for documents that Meteor clients create through method stubs."""

from django.db import models

from ddp.api import API
from ddp.protocol.ids import RANDOM_ID_LENGTH
from ddp.randomness import next_id


def collection_name(model):
    """The DDP collection the client sees ``model``'s documents in, hence where its stub
    inserts them: the registered collection a plain queryset goes to, else the default
    ``<app_label>.<model_name>``."""
    collection = API.collection_for_model(model)
    if collection is not None:
        return collection.get_name()
    meta = model._meta
    return f"{meta.app_label}.{meta.model_name}"


def _inserted_later():
    """A :class:`MeteorIdField`'s value until its row is inserted: none yet."""
    return None


class MeteorIdField(models.CharField):
    """A ``Random.id()`` string that fills itself in when its row is inserted.

    Inside a method call that sent a ``randomSeed`` the id is the one the client's stub
    gave the same document (R8), so the client keeps its document instead of swapping it
    for the server's; elsewhere it is a secure random id. Drawing at insert time, not in
    ``__init__``, matches the stub, which draws when it inserts, so unsaved instances do
    not shift the sequence. An id set before saving is kept.
    """

    description = "Meteor Random.id() string"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", RANDOM_ID_LENGTH)
        # Left empty, it is filled on save, so forms and full_clean() must accept that.
        kwargs.setdefault("blank", True)
        # Having a default is what tells Django that a primary key is made for new rows:
        # save() then inserts at once instead of first trying an UPDATE, and forms leave
        # the field to the model. The id itself is drawn later, on insert.
        kwargs.setdefault("default", _inserted_later)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == RANDOM_ID_LENGTH:
            del kwargs["max_length"]
        if kwargs.get("blank"):
            del kwargs["blank"]
        else:
            kwargs["blank"] = False
        if kwargs.get("default") is _inserted_later:
            del kwargs["default"]
        return name, path, args, kwargs

    def get_pk_value_on_save(self, instance):
        # Django asks this when it inserts a row without a primary key, in save() and in
        # bulk_create(); pre_save() alone would come too late for bulk_create().
        return self._new_id(instance)

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if add and not value:
            value = self._new_id(model_instance)
            setattr(model_instance, self.attname, value)
        return value

    def _new_id(self, instance):
        return next_id(collection_name(type(instance)))
