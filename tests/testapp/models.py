"""Models that exercise every field type the wire format documents."""

import uuid

from django.db import models

from ddp.fields import MeteorIdField


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Article(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    published = models.DateTimeField(null=True)
    day = models.DateField(null=True)
    at = models.TimeField(null=True)
    duration = models.DurationField(null=True)
    price = models.DecimalField(max_digits=8, decimal_places=2, null=True)
    ratio = models.FloatField(null=True)
    count = models.BigIntegerField(null=True)
    flag = models.BooleanField(default=False)
    ref = models.UUIDField(default=uuid.uuid4)
    blob = models.BinaryField(null=True)
    data = models.JSONField(null=True)
    tags = models.ManyToManyField(Tag, blank=True)


class Shelf(models.Model):
    """A user's own data, published only to its owner."""

    owner = models.ForeignKey("auth.User", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)


class Note(models.Model):
    """A document whose id a Meteor client stub generates (latency compensation)."""

    id = MeteorIdField(primary_key=True)
    text = models.CharField(max_length=100)
