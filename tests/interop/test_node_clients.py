"""Real third-party clients with accounts against a real ``ddpserver``.

Two Node clients each log in as Meteor's ``loginWithPassword`` does (a SHA-256 digest),
subscribe to ``AllBooks``, receive a book that THIS process creates through the ORM (another
process than the server: the change travels on the bus), call ``bookstore.addBook`` and log
out:

* ``tests/node/simpleddp_client.js``: npm ``simpleddp`` with ``simpleddp-plugin-login``, over
  a raw WebSocket at ``/websocket``;
* ``tests/node/sockjs_client.js``: npm ``sockjs-client`` at ``/sockjs``, as Meteor's browser
  client connects, over its websocket transport and over xhr-polling alone, with DDP spoken
  by the script itself.

Each script prints ``READY`` once its subscription is ready, then one line of JSON once it
has logged out.
"""

import io
import json
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from bookstore.models import Author, Book
from ddp.accounts.models import LoginToken
from tests.live import ROOT

pytestmark = [pytest.mark.django_db(transaction=True)]

NODE_DIR = ROOT / "tests" / "node"
PACKAGES = ["simpleddp", "simpleddp-plugin-login", "ws", "sockjs-client"]
#: Bounds for a hung client only: the scripts give up by themselves after 30 s.
READY_TIMEOUT = 60
CLIENT_TIMEOUT = 60
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def node_or_fail():
    """The path of ``node``, or fail saying what to install."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node not found: the interoperability tests run npm's simpleddp and sockjs-client "
            "under Node.js. Install Node.js 20 or later (with npm) and run python runtests.py."
        )
    missing = [name for name in PACKAGES if not (NODE_DIR / "node_modules" / name).is_dir()]
    if missing:
        pytest.fail(
            f"{NODE_DIR / 'node_modules'} lacks {', '.join(missing)}: run `npm ci` in "
            f"{NODE_DIR} (or delete its node_modules and run the tests with python "
            "runtests.py, which runs it)."
        )
    return node


class NodeClient:
    """One run of a script: its stdout read line by line, its stderr kept in a file."""

    def __init__(self, script, *args):
        self.script = script
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [node_or_fail(), script, *map(str, args)],
            cwd=NODE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self, deadline):
        try:
            line = self.lines.get(timeout=max(0, deadline - time.monotonic()))
        except queue.Empty:
            self.fail(f"no line within its time (seen so far: {self.seen})")
        self.seen.append(line)
        return line

    def fail(self, message):
        self.process.kill()
        self.process.wait()
        self.stderr.seek(0)
        stderr = self.stderr.read().decode(errors="replace")
        pytest.fail(
            f"{self.script} (exit code {self.process.returncode}): {message}\n"
            f"stdout: {self.seen}\nstderr:\n{stderr}"
        )

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        line = self._line(deadline)
        if line != "READY":
            self.fail(f"expected READY, got {line!r}")

    def result(self):
        """The script's one line of JSON, once it has exited 0."""
        deadline = time.monotonic() + CLIENT_TIMEOUT
        output = []
        while (line := self._line(deadline)) is not None:
            output.append(line)
        try:
            code = self.process.wait(max(0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.fail("did not exit")
        if code != 0:
            self.fail("failed")
        if len(output) != 1:
            self.fail(f"expected one line of JSON after READY, got {output}")
        return json.loads(output[0])


def run_scenario(port, script, *flags):
    """Seed, run ``script`` as alice, create the live book once it is READY; its JSON."""
    call_command("seed_bookstore", stdout=io.StringIO())
    live_title = f"Live for {script} {' '.join(flags)}".strip()
    client = NodeClient(script, port, "alice", "pw", live_title, *flags)
    client.wait_ready()
    # This process is not the server: the book reaches the client through the bus.
    author = Author.objects.get(email="ursula.leguin@example.com")
    live = Book.objects.create(title=live_title, author=author)
    return client.result(), live


def check_login(login, alice):
    assert login["id"] == str(alice.pk)
    assert TOKEN.fullmatch(login["token"]), login["token"]
    assert login["type"] == "password"
    # EJSON's date: about 90 days ahead (DDP["ACCOUNTS_TOKEN_DAYS"]).
    days_ahead = (login["tokenExpires"]["$date"] / 1000 - time.time()) / 86400
    assert 89 < days_ahead <= 90, login["tokenExpires"]
    assert set(login) == {"id", "token", "tokenExpires", "type"}


def check_added(added, title, email):
    book = Book.objects.get(pk=int(added))
    assert (book.title, book.author.email) == (title, email)
    return book


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password="pw")


def as_document(book):
    """A book as these clients hold it: ``id`` and the published fields."""
    return {"id": str(book.pk), "title": book.title, "author_id": str(book.author_id)}


def test_simpleddp_logs_in_receives_a_live_change_calls_and_logs_out(ddp_live_server, alice):
    output, live = run_scenario(ddp_live_server.port, "simpleddp_client.js")

    check_login(output["login"], alice)
    # The users document came before the login's result, with Meteor's fields.
    assert output["user"]["id"] == str(alice.pk)
    assert output["user"]["username"] == "alice"

    # simpleddp's documents carry `id` and the fields.
    assert output["live"] == as_document(live)

    book = check_added(output["added"], "From simpleddp", "simpleddp@example.com")
    assert output["addedDoc"] == as_document(book)

    # The plugin's logout resolved and forgot the user; the server deleted the token and
    # took the users document back.
    assert output["loggedOut"] is True
    assert output["userId"] is None
    assert output["usersAfterLogout"] == []
    assert not LoginToken.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    "flags, transport", [((), "websocket"), (("--xhr",), "xhr-polling")], ids=["websocket", "xhr"]
)
def test_sockjs_client_logs_in_receives_a_live_change_calls_and_logs_out(
    ddp_live_server, alice, flags, transport
):
    output, live = run_scenario(ddp_live_server.port, "sockjs_client.js", *flags)

    # sockjs-client takes its websocket transport unless told otherwise.
    assert output["transport"] == transport

    check_login(output["login"], alice)
    user = output["userBeforeResult"]
    assert user is not None, "no users document before the login's result"
    assert (user["id"], user["username"]) == (str(alice.pk), "alice")

    assert output["live"] == as_document(live)

    # The method's book reached the caller before its `updated`.
    book = check_added(output["added"], "From sockjs", "sockjs@example.com")
    assert output["addedDoc"] == as_document(book)

    assert output["loggedOut"] is True
    assert output["logoutResult"] is None
    assert output["usersAfterLogout"] == []
    assert not LoginToken.objects.filter(user=alice).exists()
