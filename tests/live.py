"""The project's own live-server helpers: ddp.testing's, plus where the repository is."""

from pathlib import Path

from ddp.testing.live import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "ServerProcess"]
