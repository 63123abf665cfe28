"""ddpserver's argument parsing, without starting a server."""

import pytest
from django.core.management.base import CommandError

from ddp.management.commands.ddpserver import parse_addrport

pytestmark = pytest.mark.quick


@pytest.mark.parametrize(
    ("addrport", "expected"),
    [
        (None, ("127.0.0.1", 8000)),
        ("8001", ("127.0.0.1", 8001)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("[::1]:8000", ("::1", 8000)),
        ("localhost:7000", ("localhost", 7000)),
    ],
)
def test_runserver_forms(addrport, expected):
    assert parse_addrport(addrport) == expected


@pytest.mark.parametrize("addrport", ["abc", "1.2.3.4:", ":80", "70000", "[::1]"])
def test_bad_addrport_says_what_is_wrong(addrport):
    with pytest.raises(CommandError, match="not a valid port"):
        parse_addrport(addrport)


def test_settle_memory_freezes_start_up_and_collects_the_young_less_often():
    import gc

    from ddp.management.commands.ddpserver import settle_memory

    before = gc.get_threshold()
    try:
        settle_memory(50_000)
        assert gc.get_threshold() == (50_000, *before[1:])
        assert gc.get_freeze_count() > 0
        gc.set_threshold(*before)
        settle_memory(None)
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
