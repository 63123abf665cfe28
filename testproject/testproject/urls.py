"""The example's Django views; ``ddpserver`` serves them on the same port as DDP."""

from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import path, re_path

from bookstore.views import index

urlpatterns = [
    path("", index, name="index"),
    path("admin/", admin.site.urls),
    # ddpserver has no static file handler of its own (runserver's appears only with
    # DEBUG), so the example serves its static files itself, with DEBUG on or off: the
    # live page's script and the admin's styles. A real deployment serves collectstatic's
    # output from a web server or CDN in front of ddpserver instead.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
