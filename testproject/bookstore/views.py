"""The example's page, served by ``ddpserver`` on the same port as DDP.

Django renders the authors and books; the front end's script (built from
``testproject/frontend``), when it is built, keeps them live over DDP and adds a login form
and the user's own shelf. Without it the page still lists the books, and says how to build it.
"""

import os

from django.contrib.staticfiles import finders
from django.shortcuts import render
from django.templatetags.static import static

from bookstore.models import Author

#: The built front end, under the app's ``static/`` (``npm run build`` writes it).
APP_JS = "bookstore/app.js"


def app_js_url():
    """The script's URL with its build time, so that a rebuild is fetched; None if unbuilt."""
    path = finders.find(APP_JS)
    if path is None:
        return None
    return f"{static(APP_JS)}?v={int(os.path.getmtime(path))}"


def index(request):
    """List every author with their books, live once the front end is built."""
    return render(
        request,
        "bookstore/index.html",
        {
            "authors": Author.objects.prefetch_related("books"),
            "origin": f"{request.scheme}://{request.get_host()}",
            "app_js": app_js_url(),
        },
    )
