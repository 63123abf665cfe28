"""App wiring: no threads, connections or monkey-patching here, only registration."""

from django.apps import AppConfig


class DDPConfig(AppConfig):
    name = "ddp"
    label = "ddp"
    verbose_name = "DDP server"

    def ready(self):
        # Importing the module registers the system checks with Django.
        from ddp import checks  # noqa: F401
        from ddp.api import API
        from ddp.bus import capture

        # Every process that writes (a web worker, a shell, a task) must know what is
        # published to announce its changes, as the admin's autodiscovery does.
        API.autodiscover()
        capture.connect()
