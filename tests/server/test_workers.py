"""``ddpserver --workers N``: N whole servers on one port, supervised by a master."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zlib

import pytest
from django.db import connection

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_PIDS = re.compile(r"with (?P<count>\d+) workers \(pids (?P<pids>[\d, ]+)\)")
CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}


def worker_pids(server):
    """The workers' pids, by index, from the start-up line."""
    match = WORKER_PIDS.search("".join(server.lines))
    assert match, server.output()
    return [int(pid) for pid in match["pids"].split(", ")]


def children(pid):
    """The pids of ``pid``'s living child processes."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def registered_pids():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM ddp_server")
        return sorted(pid for (pid,) in cursor.fetchall())


def scrape(server, worker):
    """``/metrics/<worker>``'s ``ddp_connections`` for that worker (the sample must be
    labelled with it: the scrape reached the right worker)."""
    url = f"{server.url}metrics/{worker}"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    match = re.search(rf'^ddp_connections\{{worker="{worker}"\}} (\S+)$', text, re.M)
    assert match, text[:2000]
    return int(float(match[1]))


def request(port, method, path, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": "text/plain"})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response.status, data


def frames(text):
    """The DDP messages in the ``a[...]`` frames of an xhr answer."""
    messages = []
    for line in text.splitlines():
        if line.startswith("a"):
            messages += [json.loads(message) for message in json.loads(line[1:])]
    return messages


def quoted(*messages):
    return json.dumps([json.dumps(message) for message in messages])


def poll_until(port, session, wanted, received):
    """Poll ``session`` with xhr until a message for which ``wanted`` holds arrives."""
    deadline = time.monotonic() + 20
    while not any(wanted(m) for m in received):
        assert time.monotonic() < deadline, received
        status, text = request(port, "POST", f"/sockjs/000/{session}/xhr")
        assert status == 200, (session, status, text)
        assert not text.startswith("o"), f"{session}: a new session instead of its own"
        received += frames(text)
    return received


def test_two_workers_share_the_port_each_registered_and_all_clients_get_a_change():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    with ServerProcess("--workers", "2") as server:
        pids = worker_pids(server)
        assert len(set(pids)) == 2 and server.process.pid not in pids
        assert children(server.process.pid) == set(pids)
        # One row each, none for the master (rows of other tests' servers aside: a server
        # killed earlier stays registered until its heartbeat is missed).
        ours = {*pids, server.process.pid}
        assert [pid for pid in registered_pids() if pid in ours] == sorted(pids)
        clients = [WebSocketDDPClient(server.ws_url) for _ in range(40)]
        for client in clients:
            client.subscribe("AllBooks")
        # Each worker answers its own /metrics/<k>; together they hold every client.
        assert scrape(server, 0) + scrape(server, 1) == 40
        book = Book.objects.create(title="Hot Six", author=janet)
        for client in clients:
            client.wait_for(lambda c: str(book.pk) in c.collection("bookstore.book"))
            client.close()


def test_sockjs_xhr_requests_of_many_sessions_reach_the_worker_that_holds_them():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    sessions = [f"sess{n:04d}" for n in range(40)]
    owners = [zlib.crc32(s.encode()) % 2 for s in sessions]
    assert 0 < sum(owners) < len(sessions)  # both workers own some
    with ServerProcess("--workers", "2") as server:
        port = server.port
        for session in sessions:
            assert request(port, "POST", f"/sockjs/000/{session}/xhr") == (200, "o\n")
        received = {session: [] for session in sessions}
        for session in sessions:
            body = quoted(CONNECT, {"msg": "sub", "id": "s", "name": "AllBooks", "params": []})
            status, text = request(port, "POST", f"/sockjs/000/{session}/xhr_send", body)
            assert status == 204, (session, status, text)
        for session in sessions:
            poll_until(
                port, session, lambda m: m == {"msg": "ready", "subs": ["s"]}, received[session]
            )
            assert received[session][0]["msg"] == "connected"
        assert scrape(server, 0) == owners.count(0)
        assert scrape(server, 1) == owners.count(1)
        book = Book.objects.create(title="Hot Six", author=janet)
        for session in sessions:
            poll_until(port, session, lambda m: m.get("id") == str(book.pk), received[session])


def test_a_killed_worker_is_replaced_and_its_clients_reconnect_and_converge():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    with ServerProcess("--workers", "2") as server:
        victim, survivor = worker_pids(server)
        clients = []
        # Enough clients that the victim holds some (the kernel picks who accepts).
        while len(clients) < 200 and (len(clients) < 20 or scrape(server, 0) < 3):
            client = WebSocketDDPClient(server.ws_url)
            client.subscribe("AllBooks")
            clients.append(client)
        held = scrape(server, 0)
        assert held >= 3
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(children(server.process.pid) - {survivor, victim}) == 1,
            30,
            what="a replacement worker",
        )
        (replacement,) = children(server.process.pid) - {survivor, victim}
        assert children(server.process.pid) == {survivor, replacement}
        wait_until(lambda: replacement in registered_pids(), 30, what="the replacement registered")
        # Its clients lost their connection: they reconnect, as a Meteor client does.
        reconnected = []
        for n, client in enumerate(clients):
            try:
                client.send({"msg": "ping", "id": "alive"})
                client.recv_until(lambda m: m == {"msg": "pong", "id": "alive"}, timeout=10)
            except Exception:
                clients[n] = WebSocketDDPClient(server.ws_url)
                clients[n].subscribe("AllBooks")
                reconnected.append(n)
        assert len(reconnected) == held
        book = Book.objects.create(title="Hot Six", author=janet)
        wanted = {str(book.pk): {"title": "Hot Six", "author_id": str(janet.pk)}}
        for client in clients:
            client.wait_for(lambda c: c.collection("bookstore.book") == wanted)
        assert scrape(server, 0) + scrape(server, 1) == len(clients)
        for client in clients:
            client.close()
    # Its row would stay until DDP["SERVER_TIMEOUT"], costing the next tests' writes.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ddp_server WHERE pid = %s", [victim])


def test_sigterm_to_the_master_shuts_every_worker_down_gracefully():
    with ServerProcess("--workers", "2", ddp={"SHUTDOWN_WINDOW": 0.5}) as server:
        pids = worker_pids(server)
        clients = [WebSocketDDPClient(server.ws_url) for _ in range(10)]
        server.send_signal(signal.SIGTERM)
        for client in clients:
            assert client.close_code() == 1001
        assert server.stop() == 0, server.output()
    assert not [pid for pid in pids if alive(pid)]
    assert not set(registered_pids()) & set(pids)  # each left the registry as it stopped


def test_one_worker_is_the_default_and_starts_no_master():
    with ServerProcess() as server:
        WebSocketDDPClient(server.ws_url).close()
        assert server.process.pid in registered_pids()
        assert children(server.process.pid) == set()
        assert "workers" not in "".join(server.lines)


def test_a_negative_number_of_workers_is_refused_in_one_line():
    server = ServerProcess("--workers", "-1")
    result = subprocess.run(
        [sys.executable, "-m", "django", "ddpserver", "127.0.0.1:0", "--workers", "-1"],
        env=server.environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: --workers must be >= 0 (0: one per CPU)"
