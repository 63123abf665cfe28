from django.conf import settings
from django.db import models


class LoginToken(models.Model):
    """A resume token, stored only as ``base64(sha256(token))`` (Meteor's ``hashedToken``).

    Deleting a row revokes the token: every connection logged in with it is closed, on
    every server (the deletion is announced on the bus).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ddp_login_tokens"
    )
    hashed_token = models.CharField(max_length=44, unique=True)
    when = models.DateTimeField()
    expires = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"login token of {self.user} until {self.expires:%Y-%m-%d}"
