"""Helpers for testing projects that serve DDP, and for running the example project.

Nothing in :mod:`ddp` imports this package: it is loaded only by settings and tests.
"""
