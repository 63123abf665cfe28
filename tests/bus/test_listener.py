"""Nothing a client or another database role sends may end the listener's thread."""

import threading
from types import SimpleNamespace

import pytest

from ddp.bus.listener import Listener
from ddp.bus.payload import Event, encode

pytestmark = pytest.mark.quick


def listener(on_event=lambda event: None, on_notify=None):
    return Listener({}, on_event=on_event, on_reconnect=lambda: None, on_notify=on_notify)


def notify(payload, channel="ddp_bookstore.book"):
    return SimpleNamespace(channel=channel, payload=payload)


def test_a_payload_nested_too_deep_is_counted_and_skipped():
    received = []
    it = listener(received.append)
    deep = '{"v":1,"e":"y","c":"b","i":"1","f":{"a":' + "[" * 900 + "]" * 900 + '},"s":[],"r":9}'
    it._notified(notify(deep))
    it._notified(notify("[" * 100_000))
    assert it.stats["bad_payloads"] == 2 and received == []
    [good] = encode(Event("b", "1", {"a": 1}, frozenset(), 1))
    it._notified(notify(good))
    assert [event.fields for event in received] == [{"a": 1}]


def test_a_delivery_or_notice_that_raises_does_not_stop_the_next():
    delivered = []

    def on_event(event):
        delivered.append(event.id)
        if event.id == "1":
            raise RuntimeError("a session's bug")

    def on_notify(channel, payload):
        raise RuntimeError("a fence's bug")

    it = listener(on_event, on_notify)
    it.raw_channels.add("ddp_logout")
    it._notified(notify("x", channel="ddp_logout"))
    for doc_id in ("1", "2"):
        it._notified(notify(encode(Event("b", doc_id, {}, frozenset(), 1))[0]))
    assert delivered == ["1", "2"]


def test_a_thread_that_ended_anyway_is_started_again_and_resyncs(monkeypatch):
    it = listener()
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    it._thread = ended
    runs = []
    monkeypatch.setattr(it, "_run", lambda first=True: runs.append(first))
    it.ensure_running()
    it._thread.join(5)
    assert runs == [False]  # not its first connection: it resyncs once connected


def test_a_listener_told_to_stop_is_not_started_again(monkeypatch):
    it = listener()
    runs = []
    monkeypatch.setattr(it, "_run", lambda first=True: runs.append(first))
    it._running = False
    it.ensure_running()
    assert runs == [] and not it._thread.is_alive()
