"""App wiring: no threads, connections or monkey-patching here, only registration."""

from django.apps import AppConfig


class DDPConfig(AppConfig):
    name = "ddp"
    label = "ddp"
    verbose_name = "DDP server"

    def ready(self):
        # Importing the module registers the system checks with Django.
        from ddp import checks  # noqa: F401
