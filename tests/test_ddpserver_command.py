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
