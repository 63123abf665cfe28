"""Admin pages: a change saved here reaches subscribed DDP clients like any other."""

from django.contrib import admin

from bookstore.models import Author, Book


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "email"]


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author"]
    list_select_related = ["author"]
