"""Capture files (ddp.bus.recording), ddp_capture and ddp_replay, without a ddpserver."""

import datetime
import io
import json
import select
import threading
import time

import psycopg2
import psycopg2.extensions
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import override_settings

from ddp.bus import payload, signing
from ddp.bus.payload import Event, encode, to_text
from ddp.bus.recording import BadLine, Record, Recorder, Writer, read

STARTED = datetime.datetime(2025, 5, 1, 9, 30, tzinfo=datetime.timezone.utc)
HEADER = {"format": "ddp-capture", "version": 1, "started": STARTED.isoformat()}


def event(fields=None, doc_id="1", collection="bookstore.book"):
    return Event(collection, doc_id, fields, frozenset({"key"}), 7)


def text(fields=None, **overrides):
    """An event's payload text, with ``overrides`` set on its JSON."""
    return json.dumps({**json.loads(to_text(event(fields))), **overrides})


def line(t=0.0, channel="ddp_bookstore.book", payload_text=None, **extra):
    data = {"t": t, "channel": channel, "payload": payload_text or text({"title": "T"})}
    return json.dumps({**data, **extra}) + "\n"


def capture(*lines, header=HEADER):
    head = json.dumps(header) + "\n" if isinstance(header, dict) else header
    return (head + "".join(lines)).encode()


def read_all(data):
    return list(read(io.BytesIO(data)))


def big_event():
    return event({"body": "é" * 20_000}, doc_id="2", collection="testapp.article")


def joined(chunks):
    """The whole payload of ``chunks``, joined as a capture joins them."""
    recorder = Recorder()
    return [recorder.feed("ddp_a", chunk, 0) for chunk in chunks][-1].payload


# The format ----------------------------------------------------------------------------


def test_written_records_read_back_the_same():
    small = Record(0.25, "ddp_bookstore.book", to_text(event({"title": "T"})), tags=(None,))
    chunks = encode(big_event())
    tags = tuple(signing.tag("ddp_testapp.article", chunk) for chunk in chunks)
    big = Record(1.5, "ddp_testapp.article", joined(chunks), tuple(chunks), tags=tags)
    out = io.BytesIO()
    writer = Writer(out, STARTED)
    writer.write(small)
    writer.write(big)
    assert writer.count == 2
    lines = out.getvalue().decode().splitlines()
    assert json.loads(lines[0]) == HEADER
    assert "chunks" not in json.loads(lines[1])
    assert json.loads(lines[2])["chunks"] == chunks
    got = read_all(out.getvalue())
    assert got == [
        Record(0.25, small.channel, small.payload, (), 2, (None,)),
        Record(1.5, "ddp_testapp.article", big.payload, tuple(chunks), 3, tags),
    ]
    assert got[0].notifications() == [small.payload]
    assert got[1].notifications() == chunks


def signed(channel, texts):
    return [signing.sign(channel, text) for text in texts]


def test_recorder_joins_chunks_and_keeps_the_originals_and_their_tags():
    recorder = Recorder()
    first, second = encode(big_event()), encode(big_event())
    assert len(first) > 2
    # Two chunk sets interleaved, and a small event between them, each as it completes.
    sent_first, sent_second = signed("ddp_a", first), signed("ddp_a", second)
    got = [recorder.feed("ddp_a", sent_first[0], 0.0), recorder.feed("ddp_a", sent_second[0], 0.1)]
    small = text({"title": "T"})
    got.append(recorder.feed("ddp_b", signing.sign("ddp_b", small), 0.2))
    got += [recorder.feed("ddp_a", chunk, 0.3) for chunk in sent_first[1:]]
    got += [recorder.feed("ddp_a", chunk, 0.4) for chunk in sent_second[1:]]
    records = [record for record in got if record is not None]
    assert [record.t for record in records] == [0.2, 0.3, 0.4]
    assert (records[0].payload, records[0].tags) == (small, (signing.tag("ddp_b", small),))
    assert records[1].chunks == tuple(first)
    assert records[1].tags == tuple(signing.tag("ddp_a", chunk) for chunk in first)
    assert records[2].chunks == tuple(second)
    assert payload.decode(records[2].payload).fields == {"body": "é" * 20_000}
    assert recorder.pending == 0


def test_recorder_forgets_incomplete_chunk_sets_after_the_timeout():
    recorder = Recorder(timeout=5)
    assert recorder.feed("ddp_a", encode(big_event())[0], 1.0) is None
    assert (recorder.pending, recorder.expire(5.0)) == (1, 0)
    assert (recorder.expire(6.5), recorder.pending) == (1, 0)


def test_recorder_keeps_a_chunk_it_cannot_read_as_it_came():
    assert Recorder().feed("ddp_a", "#broken", 1.0) == Record(1.0, "ddp_a", "#broken", tags=(None,))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file: not a ddp-capture file"),
        (capture(line(), header="not json\n"), "not a ddp-capture file"),
        (capture(line(), header={"format": "pcap", "version": 1}), "not a ddp-capture file"),
        (capture(header={"format": "ddp-capture", "version": 2}), "version 2 is not supported"),
        (json.dumps(HEADER)[:-4].encode(), "truncated file: it ends inside its header"),
    ],
)
def test_a_wrong_header_makes_the_whole_file_unreadable(data, reason):
    with pytest.raises(BadLine) as raised:
        read_all(data)
    assert raised.value.line == 1
    assert reason in raised.value.reason


def test_a_bad_line_is_named_and_the_others_still_read():
    data = capture(line(0.1), "{not json\n", line(0.3))
    first, bad, last = read_all(data)
    assert (first.t, first.line, last.t, last.line) == (0.1, 2, 0.3, 4)
    assert (bad.line, bad.reason.split(" (")[0]) == (3, "not valid JSON")


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (
            line(payload_text=text({"a": 1}, v=2)),
            "unknown payload version 2 (this replays version 1)",
        ),
        (line(payload_text=text(v="1")), "unknown payload version '1'"),
        (line(payload_text=text(v=True)), "unknown payload version True"),
        (line(payload_text='{"e": "x"}'), 'the payload carries no version ("v")'),
        (line(payload_text="[1]"), "the payload is not a change event (not a JSON object)"),
        (line(payload_text="{oops"), "the payload is not JSON"),
        (
            line(payload_text='{"v": 1, "e": "x"}'),
            "the payload is not a change event: it has no c, i, f, s, r",
        ),
        (line(payload_text=text(c=["a"], r="7")), "wrong type of c, r"),
        (line(payload_text=text(s="key")), "wrong type of s"),
        (line(payload_text=text(s=[1])), "wrong type of s"),
        (line(payload_text=text(f={"$date": "x"})), "$date must be a number"),
        ("[]\n", "not a JSON object"),
        (line(t=-1), '"t" must be a number of seconds, 0 or more'),
        (line(t="1"), '"t" must be a number'),
        (line().replace('"t": 0.0', '"t": 1e999'), '"t" must be a number'),
        (line().replace('"t": 0.0', '"t": NaN'), "not valid JSON"),
        (line(channel=""), '"channel" must be a non-empty string'),
        (line(channel="ddp_" + "x" * 60), "longer than PostgreSQL's 63 bytes"),
        (line().replace('"payload": "', '"payload": 1, "x": "'), '"payload" must be a string'),
        (line(payload_text=text({"a": "x" * 8000})), "over PostgreSQL's limit of 8000"),
        (line(chunks=["not a chunk"]), '"chunks" must be a list of chunk payloads'),
        (line(chunks=[]), '"chunks" must be a list'),
        (line(chunks=["#e:0:1:" + text()]), '"chunks" do not join into "payload"'),
        (line(tags="x"), '"tags" must be a list of one tag (a string or null) per notification'),
        (line(tags=["x", "y"]), '"tags" must be a list of one tag'),
        (line(tags=[1]), '"tags" must be a list of one tag'),
    ],
)
def test_each_kind_of_bad_line_says_what_is_wrong(bad_line, reason):
    bad, good = read_all(capture(bad_line, line()))
    assert isinstance(bad, BadLine) and isinstance(good, Record)
    assert bad.line == 2
    assert reason in bad.reason, bad.reason


def test_a_line_that_is_not_utf8_is_a_bad_line():
    bad, good = read_all(capture() + b'{"t": "\xff"}\n' + line().encode())
    assert (bad.line, bad.reason, good.line) == (2, "not UTF-8 text", 3)


def test_a_chunked_record_whose_chunks_join_is_accepted_without_the_payload_limit():
    [record] = read_all(capture(line(payload_text=to_text(big_event()))))
    assert "over PostgreSQL's limit of 8000" in record.reason  # too big alone...
    chunks = encode(big_event())
    [record] = read_all(capture(line(payload_text=joined(chunks), chunks=chunks)))
    assert record.chunks == tuple(chunks)  # ...but fine as the chunks it arrived in


def test_a_last_line_cut_short_is_a_truncated_file():
    complete = line(0.1)
    [first, cut] = read_all(capture(complete, line(0.2)[:30]))
    assert first.t == 0.1
    assert (cut.line, cut.reason) == (3, "truncated file: it ends in the middle of this line")
    # Whole JSON without its newline is cut short too: the writer ends every line.
    [cut] = read_all(capture(complete[:-1]))
    assert cut.reason == "truncated file: it ends in the middle of this line"
    # A last line that ends but does not parse: a lost write at the end.
    [_, cut] = read_all(capture(complete, '{"t": 0.2, "chan\n'))
    assert cut.reason.startswith("truncated file: the last line is not complete JSON")


# ddp_replay without a database: a dry run, and refused files -------------------------


def write(tmp_path, data, name="capture.jsonl"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def replay(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("ddp_replay", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_dry_run_prints_each_event_and_needs_no_database(tmp_path):
    # No django_db mark: any query would fail the test.
    chunks = encode(big_event())
    big = joined(chunks)
    book, author = text({"title": "A"}), text({"name": "N"})
    path = write(
        tmp_path,
        capture(
            line(0.5, payload_text=book),
            line(1.25, "ddp_testapp.article", big, chunks=chunks),
            line(2, "ddp_bookstore.author", author),
        ),
    )
    out, err = replay(path, "--dry-run", "--loop")
    assert out.splitlines() == [
        f"line 2  t=0.500  ddp_bookstore.book  {book}",
        f"line 3  t=1.250  ddp_testapp.article  {len(chunks)} chunks  {big}",
        f"line 4  t=2.000  ddp_bookstore.author  {author}",
        "Dry run: would send 3 events per pass.",
    ]
    assert err == ""
    out, _ = replay(path, "--dry-run", "--filter-channel", "ddp_bookstore.author")
    assert out.splitlines()[0].startswith("line 4  ")
    assert out.splitlines()[1] == "Dry run: would send 1 event per pass."


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json\n", "not valid JSON"),
        (line(payload_text=text(v=2)), "unknown payload version 2 (this replays version 1)"),
    ],
)
def test_a_bad_line_stops_the_replay_unless_skip_bad(tmp_path, bad_line, reason):
    path = write(tmp_path, capture(line(0.1), bad_line, line(0.3)))
    with pytest.raises(CommandError) as raised:
        replay(path, "--dry-run")
    assert str(raised.value).startswith(f"{path}:3: {reason}")
    assert str(raised.value).endswith("(--skip-bad replays the other lines)")
    out, err = replay(path, "--dry-run", "--skip-bad")
    assert [row.split("  ")[0] for row in out.splitlines()[:-1]] == ["line 2", "line 4"]
    assert out.splitlines()[-1] == "Dry run: would send 2 events per pass; skipped 1 bad line."
    assert err.startswith(f"{path}:3: {reason}") and err.endswith("; skipped\n")


def test_a_truncated_file_is_named_and_skip_bad_replays_what_came_before(tmp_path):
    path = write(tmp_path, capture(line(0.1), line(0.2)[:25]))
    with pytest.raises(CommandError, match=rf"^{path}:3: truncated file: it ends in the middle"):
        replay(path, "--dry-run")
    out, err = replay(path, "--dry-run", "--skip-bad")
    assert out.splitlines()[0].startswith("line 2  t=0.100  ")
    assert err == f"{path}:3: truncated file: it ends in the middle of this line; skipped\n"


@pytest.mark.parametrize("skip_bad", [[], ["--skip-bad"]])
def test_a_file_without_a_header_is_refused_even_with_skip_bad(tmp_path, skip_bad):
    path = write(tmp_path, capture(line(), header=line()))
    with pytest.raises(CommandError, match=rf"^{path}:1: not a ddp-capture file: its first line"):
        replay(path, "--dry-run", *skip_bad)
    path = write(tmp_path, capture(line(), header={**HEADER, "version": 9}), "v9.jsonl")
    with pytest.raises(CommandError, match=rf"^{path}:1: ddp-capture format version 9 is not"):
        replay(path, "--dry-run", *skip_bad)


def test_replay_refuses_a_missing_file_and_bad_numbers(tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*nothing.jsonl: No such file"):
        replay(str(tmp_path / "nothing.jsonl"))
    path = write(tmp_path, capture(line()))
    with pytest.raises(CommandError, match="--speed must be 0 or more"):
        replay(path, "--speed", "-1")
    with pytest.raises(CommandError, match="--times must be 1 or more"):
        replay(path, "--times", "0")
    assert replay(write(tmp_path, capture(), "empty.jsonl"), "--loop")[0].startswith(
        "Nothing to replay in "
    )


# Through PostgreSQL: capture, then replay what was captured ---------------------------


class Listening:
    """A plain psycopg2 connection LISTENing to ``channels``, as a ddpserver's listener."""

    def __init__(self, *channels):
        self.conn = psycopg2.connect(**connection.get_connection_params())
        self.conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with self.conn.cursor() as cursor:
            for name in channels:
                cursor.execute(f"LISTEN {psycopg2.extensions.quote_ident(name, self.conn)}")

    def received(self, count, timeout=10):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            select.select([self.conn], [], [], 0.2)
            self.conn.poll()
            got += [(n.channel, n.payload) for n in self.conn.notifies]
            self.conn.notifies.clear()
        return got

    def close(self):
        self.conn.close()


def notify(channel_name, texts):
    """Send ``texts`` in one committed transaction, signed, as a producer does."""
    with transaction.atomic(), connection.cursor() as cursor:
        signing.notify(cursor, channel_name, texts)


class Announcing(io.StringIO):
    """The capture's stdout: tells the test when it is LISTENing."""

    def __init__(self):
        super().__init__()
        self.listening = threading.Event()

    def write(self, s):
        if s.startswith("Listening on "):
            self.listening.set()
        return super().write(s)


def start_capture(path, *args):
    out, err = Announcing(), io.StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("ddp_capture", path, *args),
        kwargs={"stdout": out, "stderr": err},
    )
    thread.start()
    assert out.listening.wait(20), out.getvalue() + err.getvalue()
    return thread, out, err


@pytest.mark.django_db(transaction=True)
def test_replay_sends_exactly_the_notifications_captured(tmp_path):
    path = str(tmp_path / "capture.jsonl")
    small, chunks = encode(event({"title": "T"}))[0], encode(big_event())
    thread, out, err = start_capture(path, "--count", "2", "--channel", "ddp_test.extra")
    notify("ddp_bookstore.book", [small])
    notify("ddp_test.extra", chunks)
    thread.join(20)
    assert not thread.is_alive()
    assert err.getvalue() == ""
    assert out.getvalue().splitlines()[-1].startswith("Captured 2 events in ")
    lines = [json.loads(row) for row in open(path)]
    assert lines[0]["format"] == "ddp-capture" and lines[0]["version"] == 1
    assert datetime.datetime.fromisoformat(lines[0]["started"]).tzinfo is not None
    assert [(row["channel"], row["payload"]) for row in lines[1:]] == [
        ("ddp_bookstore.book", small),
        ("ddp_test.extra", "".join(chunk.split(":", 3)[3] for chunk in chunks)),
    ]
    assert lines[2]["chunks"] == chunks and "chunks" not in lines[1]
    assert lines[1]["tags"] == [signing.tag("ddp_bookstore.book", small)]
    assert lines[2]["tags"] == [signing.tag("ddp_test.extra", chunk) for chunk in chunks]
    assert 0 <= lines[1]["t"] <= lines[2]["t"]

    listener = Listening("ddp_bookstore.book", "ddp_test.extra")
    try:
        replayed, _ = replay(path, "--speed", "0", "--times", "2")
        # Signed again with the same key: the very notifications the writer sent.
        expected = [("ddp_bookstore.book", signing.sign("ddp_bookstore.book", small))] + [
            ("ddp_test.extra", c) for c in signed("ddp_test.extra", chunks)
        ]
        assert listener.received(2 * len(expected)) == expected * 2
        assert replayed.splitlines()[-1].startswith(
            f"Replayed 4 events ({2 * len(expected)} notifications) from {path} in "
        )
        replay(path, "--speed", "0", "--filter-channel", "ddp_test.extra")
        assert listener.received(len(chunks)) == expected[1:]
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_a_capture_records_hostile_notifications_as_they_came_and_goes_on(tmp_path):
    """Any role that may NOTIFY chooses what arrives: unsigned text, chunk headers that do
    not parse or do not fit, a chunk set never finished. None of it ends the capture."""
    path = str(tmp_path / "hostile.jsonl")
    hostile = ["not json", "#x:0:-1:part", "#x:zz:1:part", "#y:0:2:half", "[" * 7000]
    genuine = encode(event({"title": "T"}))[0]
    thread, out, err = start_capture(path, "--count", "5")
    with transaction.atomic(), connection.cursor() as cursor:
        for text in hostile:
            # Raw SQL, as another role sends it: nothing of this project signs it.
            cursor.execute("SELECT pg_notify(%s, %s)", ["ddp_bookstore.book", text])
    notify("ddp_bookstore.book", [genuine])
    thread.join(20)
    assert not thread.is_alive()
    assert out.getvalue().splitlines()[-1].startswith("Captured 5 events in ")
    assert err.getvalue() == (
        "Left out 1 event whose chunks had not all arrived when the capture stopped\n"
    )
    rows = [json.loads(row) for row in open(path)][1:]
    assert [(row["payload"], row["tags"]) for row in rows] == [
        ("not json", [None]),
        ("#x:0:-1:part", [None]),
        ("#x:zz:1:part", [None]),
        ("[" * 7000, [None]),
        (genuine, [signing.tag("ddp_bookstore.book", genuine)]),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_capture_signed_under_another_key_replays_signed_with_this_one(tmp_path):
    small, chunks = to_text(event({"title": "T"})), encode(big_event())
    with override_settings(SECRET_KEY="another machine's key"):
        sent = [signing.sign("ddp_bookstore.book", small)]
        sent_chunks = signed("ddp_testapp.article", chunks)
    recorder = Recorder()
    records = [recorder.feed("ddp_bookstore.book", sent[0], 0)]
    records += [recorder.feed("ddp_testapp.article", chunk, 1) for chunk in sent_chunks]
    out = io.BytesIO()
    writer = Writer(out, STARTED)
    for record in filter(None, records):
        writer.write(record)
    path = write(tmp_path, out.getvalue())
    # Here, those tags are wrong.
    with pytest.raises(signing.Refused):
        signing.verify("ddp_bookstore.book", sent[0])

    listener = Listening("ddp_bookstore.book", "ddp_testapp.article")
    try:
        replay(path, "--speed", "0")
        got = listener.received(1 + len(chunks))
    finally:
        listener.close()
    assert [(name, signing.verify(name, text)) for name, text in got] == [
        ("ddp_bookstore.book", small)
    ] + [("ddp_testapp.article", chunk) for chunk in chunks]


@pytest.mark.django_db(transaction=True)
def test_capture_stops_after_its_duration_and_refuses_to_overwrite(tmp_path):
    path = str(tmp_path / "quiet.jsonl")
    out = io.StringIO()
    started = time.monotonic()
    call_command("ddp_capture", path, "--duration", "0.3", stdout=out)
    assert time.monotonic() - started >= 0.3
    listening, summary = out.getvalue().splitlines()
    # Every registered collection's channel, since LISTEN takes no wildcard.
    assert "ddp_bookstore.book, " in listening and "ddp_library.items" in listening
    assert summary.startswith("Captured 0 events in ")
    assert summary.endswith(f" s to {path} (stopped by --duration).")
    assert read_all(open(path, "rb").read()) == []
    with pytest.raises(CommandError, match=r"Cannot create .*quiet.jsonl: File exists"):
        call_command("ddp_capture", path, "--duration", "0.1", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_speed_keeps_the_recorded_timing_scaled(tmp_path):
    path = write(tmp_path, capture(line(10.0), line(11.0), line(12.0)))
    started = time.monotonic()
    replay(path, "--speed", "4")
    # 2 s of capture at four times the speed, from the first event on.
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    replay(path, "--speed", "0")
    assert time.monotonic() - started < 0.5


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.django_db(transaction=True)
def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise(tmp_path):
    path = write(tmp_path, capture(*(line(n / 100) for n in range(20))))
    out, _ = replay(path, "--speed", "0", "--times", "2")
    assert out.splitlines()[:3] == [
        "Pass 1/2: 2/20 events",
        "Pass 1/2: 4/20 events",
        "Pass 1/2: 6/20 events",
    ]
    assert out.splitlines()[19] == "Pass 2/2: 20/20 events"
    assert len(out.splitlines()) == 21
    terminal = Terminal()
    call_command("ddp_replay", path, "--speed", "0", stdout=terminal)
    bar, summary = terminal.getvalue().split("\n")[:2]
    assert bar.endswith("\rReplay [" + "#" * 30 + "] 100% 20/20")
    assert summary.startswith("Replayed 20 events (20 notifications) from ")


@pytest.mark.django_db(transaction=True)
def test_a_loop_runs_until_ctrl_c_and_ends_cleanly(tmp_path, monkeypatch):
    path = write(tmp_path, capture(line(0), line(1)))
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    out, _ = replay(path, "--loop")
    # Pass 1: two events, one wait; pass 2 starts at once; Ctrl-C in pass 3's wait.
    assert len(sleeps) == 3 and all(0.9 < s <= 1 for s in sleeps)
    lines = out.splitlines()
    assert lines[:2] == ["Pass 1: 1/2 events", "Pass 1: 2/2 events"]
    assert lines[-1].startswith(f"Replayed 5 events (5 notifications) from {path} in ")
    assert lines[-1].endswith(", then Ctrl-C.")
