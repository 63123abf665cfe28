"""A plain Django view, served by ``ddpserver`` on the same port as DDP."""

from django.http import HttpResponse
from django.utils.html import format_html, format_html_join

from bookstore.models import Author

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bookstore</title></head>
<body>
<h1>Bookstore</h1>
<p>Django rendered this page, on the port that also serves DDP. From a Meteor client:</p>
<pre>const bookstore = DDP.connect('{origin}/');
const Books = new Mongo.Collection('bookstore.book', {{connection: bookstore}});
const Authors = new Mongo.Collection('bookstore.author', {{connection: bookstore}});
bookstore.subscribe('AllBooks');
bookstore.call('bookstore.addBook', 'Hot Six', 'janet@evanovich.com');</pre>
<p>Edit the rows in the <a href="/admin/">admin</a> (after <code>manage.py createsuperuser</code>)
and subscribed clients see each change.</p>
<h2>Authors and books</h2>
<ul>{authors}</ul>
</body>
</html>
"""


def index(request):
    """List every author with their books, and show how a Meteor client connects."""
    authors = format_html_join(
        "",
        "<li>{} &lt;{}&gt;<ul>{}</ul></li>",
        (
            (
                author.name,
                author.email,
                format_html_join("", "<li>{}</li>", ((book.title,) for book in author.books.all())),
            )
            for author in Author.objects.prefetch_related("books")
        ),
    )
    origin = f"{request.scheme}://{request.get_host()}"
    return HttpResponse(format_html(PAGE, origin=origin, authors=authors))
