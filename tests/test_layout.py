"""The import rules of DESIGN.md: eventlet in one driver module, nothing imports ddp.testing."""

import ast
from pathlib import Path

import pytest

import ddp

# The package imported, not the folder beside tests/: CI's wheel run has no ddp/ there.
PACKAGE = Path(ddp.__file__).resolve().parent

pytestmark = pytest.mark.quick


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def importers_of(prefix):
    return {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path))
    }


def test_only_the_driver_imports_eventlet():
    assert importers_of("eventlet") == {"ddp/server/eventlet_driver.py"}


def test_nothing_outside_ddp_testing_imports_it():
    assert {p for p in importers_of("ddp.testing") if not p.startswith("ddp/testing/")} == set()


def test_session_and_registry_know_no_transport():
    for module in ("ddp/session.py", "ddp/api.py", "ddp/serialize.py"):
        names = set(imported_modules(PACKAGE.parent / module))
        assert not {n for n in names if n.split(".")[0] in {"eventlet", "psycopg2", "socket"}}
        assert not {n for n in names if n.startswith("ddp.server")}
