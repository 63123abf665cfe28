from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "ddp.accounts"
    label = "ddp_accounts"
    verbose_name = "DDP accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        import ddp.accounts.checks  # noqa: F401  (registers the system checks)
        from ddp.accounts import tokens
        from ddp.accounts.models import LoginToken
        from ddp.api import API

        post_delete.connect(tokens.announce_revoked, sender=LoginToken, dispatch_uid="ddp.accounts")
        # A password change or a deactivation revokes the user's tokens (a deletion of
        # the user deletes them too, by CASCADE, each with its post_delete).
        user_model = get_user_model()
        post_save.connect(
            tokens.revoke_on_credentials, sender=user_model, dispatch_uid="ddp.accounts"
        )
        API.valid_tokens = tokens.valid
        API.sweep_tokens = tokens.sweep
