"""Nothing a client or another database role sends may end the listener's thread."""

from types import SimpleNamespace

import pytest

from ddp import metrics
from ddp.bus import payload, signing
from ddp.bus.listener import Listener
from ddp.bus.payload import Event, encode
from ddp.testing.driver import FakeDriver

pytestmark = pytest.mark.quick


def listener(on_event=lambda event: None, on_notify=None, driver=None):
    return Listener(
        {},
        driver or FakeDriver(),
        on_event=on_event,
        on_reconnect=lambda: None,
        on_notify=on_notify,
    )


def notify(payload, channel="ddp_bookstore.book", sign=True):
    """A notification as psycopg2 hands it over, signed as this project's writers sign."""
    return SimpleNamespace(
        channel=channel, payload=signing.sign(channel, payload) if sign else payload
    )


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
    driver = FakeDriver()
    it = listener(driver=driver)
    runs = []
    # A loop that returns, as nothing should make it: its thread ends.
    monkeypatch.setattr(it, "_connect_and_serve", runs.append)
    it.start()
    it.ensure_running()  # still starting: not a second thread
    driver.run()
    assert runs == [True]
    it.ensure_running()
    it.ensure_running()
    driver.run()
    assert runs == [True, False]  # not its first connection: it resyncs once connected
    assert it.stats["reconnects"] == 1


def test_a_listener_told_to_stop_is_not_started_again(monkeypatch):
    driver = FakeDriver()
    it = listener(driver=driver)
    runs = []
    monkeypatch.setattr(it, "_connect_and_serve", runs.append)
    it.start()
    driver.run()
    it.stop()
    it.ensure_running()
    driver.run()
    assert runs == [True] and driver.idle


def refused():
    return metrics.counters["ddp_listener_refused_payloads_total"]


def test_notifications_without_a_valid_tag_are_refused_and_counted(caplog):
    received, notices = [], []
    it = listener(received.append, lambda channel, text: notices.append(text))
    it.raw_channels.add("ddp_logout")
    [text] = encode(Event("b", "1", {"a": 1}, frozenset(), 1))
    before = refused()
    it._notified(notify(text, sign=False))
    it._notified(notify(payload.tagged("A" * 43, text), sign=False))
    # Genuine, but signed for another channel: a change cannot pose as another's.
    it._notified(notify(signing.sign("ddp_bookstore.author", text), sign=False))
    it._notified(notify("token-hash", channel="ddp_logout", sign=False))
    it._notified(notify(signing.sign("ddp_bookstore.book", "token-hash"), "ddp_logout", False))
    assert refused() - before == 5
    assert received == [] and notices == []
    assert it.stats["bad_payloads"] == 0 and it.stats["events"] == 0
    # One warning for the first, then none for a while, and never the content.
    [warning] = [r for r in caplog.records if r.name == "ddp.bus"]
    assert warning.levelname == "WARNING" and "Refused 1 notification(s)" in warning.message
    assert text not in warning.message and "token-hash" not in warning.message
    it._notified(notify(text))
    it._notified(notify("token-hash", channel="ddp_logout"))
    assert [event.fields for event in received] == [{"a": 1}] and notices == ["token-hash"]


def test_a_chunk_set_is_verified_chunk_by_chunk():
    received = []
    it = listener(received.append)
    chunks = encode(Event("b", "1", {"body": "x" * 20_000}, frozenset(), 1))
    # A forged chunk claiming the set's id is refused before it can spoil the set.
    it._notified(notify(chunks[0]))
    it._notified(notify(chunks[0].split(":", 1)[0] + ":0:9:x", sign=False))
    for chunk in chunks[1:]:
        it._notified(notify(chunk))
    assert [event.fields for event in received] == [{"body": "x" * 20_000}]
    assert it.stats["bad_payloads"] == 0


def test_refusals_are_summed_up_in_a_warning_at_most_every_minute(caplog):
    driver = FakeDriver(start=1000.0)
    it = listener(driver=driver)
    for seconds in (0, 1, 30, 59, 61, 62):
        driver.advance(1000.0 + seconds - driver.clock())
        it._notified(notify("{}", sign=False))
    assert [r.message.split(" without")[0] for r in caplog.records if r.name == "ddp.bus"] == [
        "Refused 1 notification(s)",
        "Refused 4 notification(s)",
    ]
