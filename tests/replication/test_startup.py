"""ddpserver checks at start-up whether the database can carry DDP["CAPTURE"], and says
which mode is active and why."""

import pytest
from django.db import connection

from tests.live import ServerProcess
from tests.replication.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def changes_line(server):
    """The line that follows "listening on" (which start() waits for), once printed."""

    def lines():
        return [line for line in server.lines if line.startswith("  changes: ")]

    wait_for(lines)
    (line,) = lines()
    return line.strip()


def test_the_embedded_database_gives_database_capture():
    with ServerProcess() as server:
        line = changes_line(server)
    assert line.startswith(
        "changes: signals capture (database capture is possible: "
        'DDP["CAPTURE"] is "auto", wal_level is logical, and role '
    )
    assert line.endswith('; set DDP["CAPTURE"] = "database")')


def test_database_capture_when_asked():
    with ServerProcess(ddp={"CAPTURE": "database"}) as server:
        line = changes_line(server)
    assert line.startswith('changes: database capture (DDP["CAPTURE"] is "database"')
    assert line.endswith("; read by the server that holds the lock)")


def test_signals_when_asked():
    with ServerProcess(ddp={"CAPTURE": "signals"}) as server:
        assert changes_line(server) == 'changes: signals capture (DDP["CAPTURE"] is "signals")'


@pytest.fixture
def author_without_identity():
    """bookstore_author's deletes without their key: database capture cannot carry it."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bookstore_author REPLICA IDENTITY NOTHING")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT")


def test_auto_falls_back_to_signals_and_says_what_to_change(author_without_identity):
    with ServerProcess() as server:
        line = changes_line(server)
        output = server.output()
    assert line == (
        "changes: signals capture (database capture is not possible: bookstore_author's "
        "REPLICA IDENTITY does not give a deleted row's primary key)"
    )
    assert "(ddp.W002) Changes come from model signals" in output
    assert "ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT;" in output


def test_database_capture_that_cannot_work_stops_the_server(author_without_identity):
    server = ServerProcess(ddp={"CAPTURE": "database"})
    with pytest.raises(RuntimeError, match="did not start") as failed:
        server.start()
    assert '(ddp.E013) DDP["CAPTURE"] is "database", but bookstore_author\'s' in str(failed.value)
    assert "Traceback" not in str(failed.value)
