"""The import rules of DESIGN.md, all of them.

Imports flow one way, ``commands -> server -> (sockjs | websocket) -> runtime -> session ->
bus -> api -> protocol``; ``ddp.protocol`` and ``ddp.sockjs`` import nothing else of
``ddp``; only the eventlet driver imports eventlet; nothing imports ``ddp.testing``; and the
modules beside the chain (settings, metrics, accounts, replication...) serve it from below,
never importing the transports or the server. ``ddp.protocol`` loading no Django, eventlet
or psycopg2 in a fresh interpreter is checked in tests/protocol/test_sans_io.py.
"""

import ast
from pathlib import Path

import pytest

import ddp

# The package imported, not the folder beside tests/: CI's wheel run has no ddp/ there.
PACKAGE = Path(ddp.__file__).resolve().parent

pytestmark = pytest.mark.quick

#: DESIGN.md's chain, top first; places on one rank may not import each other.
CHAIN = [
    {"ddp.management"},
    {"ddp.server"},
    {"ddp.sockjs", "ddp.websocket"},
    {"ddp.runtime"},
    {"ddp.session"},
    {"ddp.bus"},
    {"ddp.api"},
    {"ddp.protocol"},
]
RANK = {place: rank for rank, places in enumerate(CHAIN) for place in places}
#: What only the top of the chain may import: the transports and what runs them.
ABOVE_THE_SESSION = {"ddp.management", "ddp.server", "ddp.sockjs", "ddp.websocket", "ddp.runtime"}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path):
    """Every module ``path`` imports, ``from ddp import x`` counted as ``ddp.x``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ddp":
                yield from (f"ddp.{alias.name}" for alias in node.names)
            else:
                yield node.module


def place(name):
    """The place of DESIGN's layout table a ``ddp`` module belongs to."""
    for candidate in RANK:
        if name == candidate or name.startswith(candidate + "."):
            return candidate
    return ".".join(name.split(".")[:2])


def imports():
    """``(importing module, imported ddp module)`` for every import inside ddp/."""
    for path in PACKAGE.rglob("*.py"):
        for name in imported_modules(path):
            yield module_name(path), name


def importers_of(prefix):
    return {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path))
    }


def test_only_the_driver_imports_eventlet():
    assert importers_of("eventlet") == {"ddp/server/eventlet_driver.py"}


#: Who may use the standard library's threads and waits rather than a driver's, and why.
#: Everything else runs on the driver it is given (ddp/runtime/driver.py).
STANDARD_THREADS = {
    # A cache every writer of a process shares: a Django process's writers are its WSGI
    # server's OS threads, which no driver reaches.
    "ddp/bus/matching.py",
    # Plain blocking programs without a hub: the capture command, the master process of
    # ``--workers`` (it forks the servers).
    "ddp/management/commands/ddp_capture.py",
    "ddp/server/workers.py",
    # Django's autoreloader, which sleeps with ``time.sleep`` and takes the main thread:
    # Django cannot be handed a driver, so in the server it runs on eventlet's patching.
    "ddp/server/reloader.py",
    # The fake driver itself, and the tests' live server.
    "ddp/testing/driver.py",
    "ddp/testing/live.py",
}


def test_only_what_runs_without_a_driver_uses_the_standard_librarys_threads():
    users = importers_of("threading") | importers_of("select") | importers_of("queue")
    assert users - STANDARD_THREADS == set()


def test_nothing_outside_ddp_testing_imports_it():
    assert {p for p in importers_of("ddp.testing") if not p.startswith("ddp/testing/")} == set()


def test_imports_flow_down_the_chain():
    upward = sorted(
        (importer, name)
        for importer, name in imports()
        if name.startswith("ddp.")
        and place(importer) in RANK
        and place(name) in RANK
        and place(importer) != place(name)
        and RANK[place(name)] <= RANK[place(importer)]
    )
    assert upward == []


@pytest.mark.parametrize("package", ["ddp.protocol", "ddp.sockjs"])
def test_protocol_and_sockjs_import_nothing_else_of_ddp(package):
    outside = sorted(
        (importer, name)
        for importer, name in imports()
        if place(importer) == package and name.startswith("ddp") and place(name) != package
    )
    assert outside == []


def test_what_serves_the_chain_from_below_never_imports_its_top():
    upward = sorted(
        (importer, name)
        for importer, name in imports()
        if place(importer) not in RANK
        and not importer.startswith("ddp.testing")
        and importer != "ddp"
        and place(name) in ABOVE_THE_SESSION
    )
    assert upward == []


def test_the_session_and_the_registry_know_no_transport():
    for module in ("ddp/session.py", "ddp/api.py", "ddp/serialize.py"):
        names = set(imported_modules(PACKAGE.parent / module))
        assert not {n for n in names if n.split(".")[0] in {"eventlet", "psycopg2", "socket"}}


def test_the_rules_see_the_package():
    """The checks above would pass on an empty list: the walk must find the chain."""
    seen = {place(importer) for importer, _ in imports()}
    assert set(RANK) <= seen
