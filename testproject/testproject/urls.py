"""The example's Django views; ``ddpserver`` serves them on the same port as DDP."""

from django.contrib import admin
from django.urls import path

from bookstore.views import index

urlpatterns = [
    path("", index, name="index"),
    path("admin/", admin.site.urls),
]
