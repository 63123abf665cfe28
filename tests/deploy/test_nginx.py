"""deploy/ run for real: Debian's nginx with ``deploy/nginx/ddp.conf`` in front of two
``ddpserver`` processes and one gunicorn, all on the test database.

The site configuration is the repository's own file, edited as a team would edit it (the
upstreams' ports, the listen address, the paths), never a copy written here; only nginx's
process settings, which Debian's ``/etc/nginx/nginx.conf`` holds on a server, are written
here. Through nginx's port:

* npm ``sockjs-client`` over xhr-polling and over websocket (``tests/node/failover_client.js``)
  log in, subscribe and get a change this process writes; when their ddpserver stops
  (SIGTERM), they reconnect through nginx to the other, log in again, re-subscribe and hold
  what the database holds, a change written after the stop included;
* a Django view answers, served by gunicorn (its access log has the request);
* nginx's ``X-Forwarded-For`` lets ddpserver, which trusts it (``TRUSTED_PROXIES``), see
  the address its client connected from.

Needs ``nginx`` (``apt-get install nginx``; ``python runtests.py`` as root installs it) and
``tests/node/node_modules``: without them the tests fail and say so.
"""

import io
import json
import os
import pwd
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ROOT, ServerProcess, metric

pytestmark = pytest.mark.django_db(transaction=True)

SITE = ROOT / "deploy" / "nginx" / "ddp.conf"
NODE_DIR = ROOT / "tests" / "node"
#: Bounds for something hung only: the clients give up by themselves after 60 s.
TIMEOUT = 90

#: nginx's process settings, which Debian's /etc/nginx/nginx.conf holds on a server; the
#: site, ``include``d inside ``http``, is deploy/'s file.
MAIN_CONF = """\
daemon off;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


def executable(name, hint):
    # Debian puts nginx in /usr/sbin, which a user's PATH may leave out.
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        pytest.fail(f"{name} not found: {hint}")
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port, process):
    """Return once ``port`` accepts connections; fail if ``process`` exits first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_logged(read, text):
    """Return once ``read()`` (a log) holds ``text``; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while text not in (log := read()):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} was never logged; the log:\n{log}")
        time.sleep(0.05)


def edit(text, replacements):
    """``text`` with each ``(old, new)`` replaced, as a team edits the file; each ``old``
    must be there, so that a change to the file cannot leave the test checking less."""
    for old, new in replacements:
        if old not in text:
            pytest.fail(f"{SITE} no longer has {old!r}: update the edits of {__file__}")
        text = text.replace(old, new)
    return text


class Daemon:
    """A process of the site (nginx, gunicorn), its output kept in a file."""

    def __init__(self, name, command, port, env=None):
        self.name = name
        self.port = port
        self.output_file = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.output_file,
            stderr=subprocess.STDOUT,
        )
        if not wait_listening(port, self.process):
            self.stop()
            pytest.fail(f"{name} did not start:\n{self.output()}")

    def output(self):
        self.output_file.seek(0)
        return self.output_file.read().decode(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Site:
    """nginx in front of two ddpservers and gunicorn, as deploy/ describes them."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.servers = []
        self.daemons = []

    def start(self):
        nginx = executable(
            "nginx",
            "install Debian's package (apt-get install nginx), or run python runtests.py as "
            "root, which installs it",
        )
        self.servers = [
            ServerProcess(ddp={"TRUSTED_PROXIES": ["127.0.0.1"]}).start() for _ in range(2)
        ]
        self.gunicorn_log = self.prefix / "gunicorn-access.log"
        gunicorn_port = free_port()
        self.daemons.append(
            Daemon(
                "gunicorn",
                [
                    *(sys.executable, "-m", "gunicorn", "testproject.wsgi:application"),
                    *("--bind", f"127.0.0.1:{gunicorn_port}", "--workers", "2"),
                    *("--access-logfile", str(self.gunicorn_log)),
                ],
                gunicorn_port,
                # The servers' settings, database and sys.path.
                env=self.servers[0].environ(),
            )
        )
        self.gunicorn_port = gunicorn_port
        self.port = free_port()
        (self.prefix / "log").mkdir()
        self.static = self.prefix / "static"
        self.static.mkdir()
        first, second = (server.port for server in self.servers)
        site = edit(
            SITE.read_text(),
            [
                ("server 127.0.0.1:8001 ", f"server 127.0.0.1:{first} "),
                ("server 127.0.0.1:8002 ", f"server 127.0.0.1:{second} "),
                ("server 127.0.0.1:8000;", f"server 127.0.0.1:{gunicorn_port};"),
                ("listen 80;", f"listen 127.0.0.1:{self.port};"),
                ("listen [::]:80;", ""),
                ("/var/log/nginx/", f"{self.prefix}/log/"),
                ("/srv/myproject/static/", f"{self.static}/"),
            ],
        )
        (self.prefix / "ddp.conf").write_text(site)
        # Its workers would otherwise run as nobody, who may not enter the test's folders.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
        main = MAIN_CONF.format(user=user, prefix=self.prefix, site=self.prefix / "ddp.conf")
        (self.prefix / "nginx.conf").write_text(main)
        self.daemons.append(
            Daemon(
                "nginx",
                [
                    nginx,
                    "-p",
                    str(self.prefix),
                    "-e",
                    "stderr",
                    "-c",
                    str(self.prefix / "nginx.conf"),
                ],
                self.port,
            )
        )
        return self

    def stop(self):
        for daemon in reversed(self.daemons):
            daemon.stop()
        for server in self.servers:
            server.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def get(self, path):
        """``(status, body)`` of a GET through nginx."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def upstream_of(self, request_line):
        """The upstream that served the request ``request_line`` (``"GET /x"``), from
        nginx's access log (deploy/'s ``ddp_upstream`` format)."""
        pattern = re.compile(rf'"{re.escape(request_line)} HTTP/[\d.]+" \d+ \d+ upstream=(\S+)')
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            match = pattern.search((self.prefix / "log" / "ddp.access.log").read_text())
            if match:
                return match[1]
            time.sleep(0.05)
        pytest.fail(f"nginx logged no {request_line!r}")

    def session_on(self, server):
        """A SockJS session id that nginx hashes to ``server``: found by sending nginx an
        ``xhr_send`` for a session that does not exist (404) and reading which server got it."""
        for _ in range(100):
            session = secrets.token_hex(8)
            path = f"/sockjs/000/{session}/xhr_send"
            request = urllib.request.Request(
                self.url + path, data=b'["probe"]', headers={"Content-Type": "text/plain"}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            # Closed at once: nginx logs the request when the connection ends, and would
            # wait out its lingering close (5 s) for a client that keeps it open.
            refused.value.close()
            assert refused.value.code == 404
            if self.upstream_of(f"POST {path}") == f"127.0.0.1:{server.port}":
                return session
        pytest.fail(f"no SockJS session id of 100 went to port {server.port}")


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    try:
        yield site.start()
    finally:
        site.stop()


class FailoverClient:
    """One run of tests/node/failover_client.js: commands in, events (JSON lines) out."""

    def __init__(self, site, transport, session):
        node = executable("node", "install Node.js 20 or later, with npm")
        if not (NODE_DIR / "node_modules" / "sockjs-client").is_dir():
            pytest.fail(f"run `npm ci` in {NODE_DIR} (python runtests.py does)")
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [node, "failover_client.js", site.url, "alice", "pw", transport, session],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def command(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def next_event(self):
        try:
            event = self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            event = None
        if event is None:
            self.process.kill()
            self.process.wait()
            self.stderr.seek(0)
            pytest.fail(
                f"failover_client.js stopped or hung (exit code {self.process.returncode}); "
                f"events: {self.seen}\nstderr:\n{self.stderr.read().decode(errors='replace')}"
            )
        self.seen.append(event)
        return event

    def wait_for(self, title):
        """The books the client holds once a book of ``title`` arrived."""
        self.command(f"WAIT {title}")
        event = self.next_event()
        assert event["event"] == "seen" and event["title"] == title, event
        return event["books"]

    def quit(self):
        self.command("QUIT")
        assert self.process.wait(TIMEOUT) == 0


def books():
    """Every book as the clients hold it: ``{id: {"title", "author_id"}}``."""
    return {
        str(book.pk): {"title": book.title, "author_id": str(book.author_id)}
        for book in Book.objects.all()
    }


def subscribed(server):
    """The subscriptions to AllBooks that ``server`` holds."""
    return metric(server, "ddp_subscriptions", '{publication="AllBooks"}')


def test_sockjs_clients_move_to_the_other_server_when_theirs_stops(site):
    alice = User.objects.create_user("alice", password="pw")
    call_command("seed_bookstore", stdout=io.StringIO())
    author = Author.objects.get(email="ursula.leguin@example.com")
    leaving, staying = site.servers
    # Both on the server that will stop: each transport must find its way to the other.
    clients = {
        transport: FailoverClient(site, transport, site.session_on(leaving))
        for transport in ("xhr-polling", "websocket")
    }
    try:
        for transport, client in clients.items():
            event = client.next_event()
            assert event["event"] == "ready" and event["connection"] == 1, event
            assert event["transport"] == transport
            assert event["userId"] == str(alice.pk)
            assert event["books"] == books()
        assert subscribed(leaving) == 2
        assert subscribed(staying) == 0

        # This process is neither server: the change reaches them through PostgreSQL.
        Book.objects.create(title="Before the stop", author=author)
        for client in clients.values():
            assert client.wait_for("Before the stop") == books()

        leaving.send_signal(signal.SIGTERM)
        for client in clients.values():
            closed = client.next_event()
            assert closed["event"] == "closed" and closed["connection"] == 1, closed
            ready = client.next_event()
            assert ready["event"] == "ready" and ready["connection"] == 2, ready
            # Logged in again (with the resume token) and re-subscribed, on the other server.
            assert ready["userId"] == str(alice.pk)
            assert ready["books"] == books()
        assert leaving.stop() == 0, leaving.output()
        # (Not its connections: the next poll of an xhr-polling client whose server has gone
        # reaches this one, which opens a session of that id, never used: sockjs-client
        # reconnects on "Server lost session", and that session ends once unused.)
        assert subscribed(staying) == 2

        Book.objects.create(title="After the stop", author=author)
        for client in clients.values():
            assert client.wait_for("After the stop") == books()
            client.quit()
    finally:
        for client in clients.values():
            if client.process.poll() is None:
                client.process.kill()
                client.process.wait()


def test_django_views_go_to_gunicorn_and_ddp_sees_the_real_client(site):
    author = Author.objects.create(name="Octavia Butler", email="octavia@example.com")
    Book.objects.create(title="Kindred", author=author)

    probe = secrets.token_hex(8)
    status, body = site.get(f"/?probe={probe}")
    assert status == 200
    assert "Kindred" in body
    # gunicorn logs a request once it has answered it.
    wait_logged(site.gunicorn_log.read_text, f"GET /?probe={probe} ")
    assert site.upstream_of(f"GET /?probe={probe}") == f"127.0.0.1:{site.gunicorn_port}"

    (site.static / "hello.txt").write_text("static from nginx")
    assert site.get("/static/hello.txt") == (200, "static from nginx")
    # /metrics tells who subscribes to what: nginx keeps it off the public port.
    assert site.get("/metrics")[0] == 403

    # nginx appends the address its client connected from to X-Forwarded-For; ddpserver
    # trusts nginx (TRUSTED_PROXIES), so it takes that address, not a spoofed one before it.
    # The client connects from another loopback address than nginx's own.
    sock = socket.create_connection(("127.0.0.1", site.port), source_address=("127.0.0.2", 0))
    client = WebSocketDDPClient(
        f"ws://127.0.0.1:{site.port}/websocket",
        socket=sock,
        header=["X-Forwarded-For: 203.0.113.7"],
    )
    try:
        wait_logged(
            lambda: "".join(server.output() for server in site.servers),
            f"ddp.connect id={client.session_id} transport=websocket remote=127.0.0.2\n",
        )
    finally:
        client.ws.close()
