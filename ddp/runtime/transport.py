"""What the connection runtime needs of whatever carries a client's messages.

Raw WebSocket (:mod:`ddp.server.raw_ddp`) and SockJS (:mod:`ddp.server.sockjs`) each
implement :class:`Transport`, structurally: :mod:`ddp.sockjs` imports nothing else of
``ddp``, so it cannot subclass anything here. The runtime
(:class:`~ddp.runtime.connection.ConnectionRuntime`) is the only caller, from green threads
of the server's one OS thread: a transport needs no lock of its own for the runtime's sake.
"""

from typing import Protocol


class Transport(Protocol):
    """One client's carrier. Texts are the JSON texts of DDP messages, one per message;
    the transport frames them (a WebSocket text frame each, SockJS's ``a[...]``)."""

    #: The WSGI environ of the request that opened the transport: the session reads the
    #: peer's address (and headers) from it.
    environ: dict

    def send_now(self, texts: list[str]) -> bytes:
        """Write the frames of ``texts`` as far as the socket takes them without waiting;
        return the bytes left (empty when none), which must be written, with
        :meth:`send_bytes`, before anything else. Called by the one flusher of all
        connections, which must never wait on one client."""

    def send_texts(self, texts: list[str]) -> None:
        """Write the frames of ``texts``, waiting as the client reads; OSError when the
        peer went away. Called by the connection's own writer only."""

    def send_bytes(self, data: bytes) -> None:
        """Write the rest of a frame :meth:`send_now` left, waiting as needed."""

    def close(self, code: int, reason: str | None) -> None:
        """Close after what was written: the transport's close frame, then the socket."""

    def abort(self) -> None:
        """Cut the connection now, even while a write is blocked on it (a client that
        stopped reading could not be sent a close)."""

    def backlog(self) -> tuple[int, int]:
        """``(bytes, messages)`` the transport holds for the client beyond the runtime's
        outbox: a large send waits for it to shrink, as for the outbox."""

    def ping(self) -> bool:
        """Send a liveness ping of the transport's own, without waiting; False when none
        went (the transport has none, or cannot send one now). For peers without DDP
        heartbeats (``pre1``)."""

    def answered(self) -> bool:
        """Whether the peer answered the last :meth:`ping`."""

    def keepalive(self, now: float) -> tuple[int, str] | None:
        """The transport's own heartbeat schedule, if it has one (a SockJS websocket's
        RFC 6455 pings), called at every beat of the runtime's heartbeat thread with the
        monotonic ``now``: send a ping when one is due, without waiting, and return
        ``(code, reason)`` to close with once the peer left one unanswered too long."""
