"""Which of the replication reader's events repeat an announcement a server had."""

import pytest

from ddp.bus.announcements import Seen, event_ids

pytestmark = pytest.mark.quick


def batch(position, size=2):
    ids = event_ids(position)
    return [next(ids) for _ in range(size)]


def test_a_batch_announced_again_is_dropped_whole():
    seen = Seen()
    first = batch(0x1F00)
    assert [seen.repeated(i) for i in first] == [False, False]
    # The next reader reads the same transactions again: same position, another nonce.
    assert [seen.repeated(i) for i in batch(0x1F00)] == [True, True]
    # And an earlier batch, which the slot also sends again.
    assert seen.repeated(batch(0x1E00)[0])
    # What comes after passes, as does every other id: a writer's, a batch cut inside a
    # long transaction (no position), anything not of this form.
    assert [seen.repeated(i) for i in batch(0x2000, 3)] == [False] * 3
    assert not any(seen.repeated(i) for i in ["9f86d081884c7d65", "", "r12.nonce.1", "rzz.0.0"])


def test_a_server_forgets_at_a_resync():
    seen = Seen()
    seen.repeated(batch(0x5000)[0])
    seen.forget()
    # A database restored elsewhere starts lower; the listener's reconnection re-ran all.
    assert not seen.repeated(batch(0x10)[0])


def test_ids_fit_a_chunk_header_and_differ_per_announcement():
    one, two = batch(0xFFFFFFFFFFFF), batch(0xFFFFFFFFFFFF)
    assert len(set(one + two)) == 4
    assert all(":" not in i and "#" not in i for i in one)
