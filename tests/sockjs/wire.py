"""A raw HTTP client for the SockJS tests: exact bytes, chunk by chunk, held or cut off.

http.client hides what these tests check (chunk boundaries, HTTP/1.0, a request left
hanging, a connection dropped mid-answer), so requests go over a plain socket.
"""

import socket
import uuid

TIMEOUT = 10


class Response:
    """A response's head; its body is read from the connection as the test needs it."""

    def __init__(self, connection, version, status, headers):
        self.connection = connection
        self.version = version
        self.status = status
        self.headers = headers

    def __getitem__(self, name):
        """A header's value, or None: the tests check absent headers as often as present."""
        return self.headers.get(name.lower())

    @property
    def chunked(self):
        return (self["transfer-encoding"] or "").lower() == "chunked"

    def read_body(self):
        """The whole body, however it is framed."""
        if self.status in (204, 304):
            return ""
        if self.chunked:
            return "".join(iter(self.connection.read_chunk, ""))
        if self["content-length"] is not None:
            return self.connection.read(int(self["content-length"]))
        return self.connection.read()

    def read_frame(self):
        """The next chunk of a streaming answer: one frame each."""
        assert self.chunked
        return self.connection.read_chunk()


class Connection:
    """``source``: the client's address, another one of the loopback network (Linux
    answers all of 127.0.0.0/8), for a client that is not the one before."""

    def __init__(self, port, source=None):
        self.port = port
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=source and (source, 0)
        )
        self.file = self.sock.makefile("rb")

    def send_request(self, method, path, body=b"", headers=None, version="1.1"):
        """Write a request without waiting for its answer (a poll to be left hanging)."""
        if isinstance(body, str):
            body = body.encode()
        lines = [f"{method} {path} HTTP/{version}", f"Host: 127.0.0.1:{self.port}"]
        headers = dict(headers or {})
        if method in ("POST", "PUT") or body:
            headers.setdefault("Content-Length", str(len(body)))
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def request(self, method, path, body=b"", headers=None, version="1.1"):
        self.send_request(method, path, body, headers, version)
        return self.read_head()

    def read_head(self):
        version, status, _ = self.file.readline().decode("latin-1").split(" ", 2)
        headers = {}
        while (line := self.file.readline().decode("latin-1").rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(self, version.split("/")[1], int(status), headers)

    def read_chunk(self):
        size = int(self.file.readline().split(b";")[0], 16)
        data = self.file.read(size)
        self.file.readline()
        return data.decode()

    def read(self, size=None):
        """``size`` bytes, or everything until the server closes."""
        return (self.file.read() if size is None else self.file.read(size)).decode()

    def closed(self):
        """Whether the server closed the connection (nothing more to read)."""
        return self.file.read(1) == b""

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fetch(port, method, path, body=b"", headers=None, version="1.1", source=None):
    """One request on a connection of its own; the response with ``.body`` read."""
    with Connection(port, source) as connection:
        response = connection.request(method, path, body, headers, version)
        response.body = response.read_body()
    return response


def session_url(service="echo"):
    """A fresh session's URL under ``service``: ``/echo/000/<uuid>``."""
    return f"/{service}/000/{uuid.uuid4()}"
