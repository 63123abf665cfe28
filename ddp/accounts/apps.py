from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "ddp.accounts"
    label = "ddp_accounts"
    verbose_name = "DDP accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_delete

        from ddp.accounts import checks  # noqa: F401  (registers the system checks)
        from ddp.accounts.models import LoginToken
        from ddp.accounts.tokens import announce_revoked

        post_delete.connect(announce_revoked, sender=LoginToken, dispatch_uid="ddp.accounts")
