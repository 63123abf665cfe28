"""The replication reader's events carry ids derived from the commit position, so that a
batch announced twice (after a takeover) is dropped by the servers that had it.

The reader (:mod:`ddp.replication.reader`) announces committed transactions a batch at a
time, in commit order, and confirms a batch's position to the slot only once its events
have committed. A reader that dies in between leaves the next one to read, and announce,
those transactions again. Events are whole documents read after the fact, so a second
copy is harmless for a merge box that compares values; it is not for a collection that
keeps no values (``NO_MERGE``), whose clients would get a ``changed`` again.

A batch that ends at a transaction's end has a *position*: that end's WAL position. Every
event of the batch is given the id ``r<position, hex>.<nonce>.<n>``, the nonce drawn for
this announcement. Batches reach a server in commit order, all of a batch's events
together (one transaction of NOTIFYs). So a server that has seen a batch at position P
knows every transaction up to P has been announced, each changed document read after its
last change up to P: an event from a batch at P or before that is not the announcement
it saw last (a lower position, or P with another nonce) repeats what it has, and is
dropped. A batch cut inside a long transaction has no position and an id like any
writer's: never dropped, and after a takeover announced again, harmlessly for merge boxes.

A server forgets what it saw when its listener reconnects (the subscriptions re-run then,
and a database restored elsewhere starts its positions again lower).
"""

import re
import secrets

_ID = re.compile(r"r([0-9a-f]{1,16})\.([0-9a-f]{8})\.[0-9]+")


def event_ids(position):
    """The ids of the events of a batch that ends at WAL ``position`` (an int)."""
    nonce = secrets.token_hex(4)
    n = 0
    while True:
        yield f"r{position:x}.{nonce}.{n}"
        n += 1


class Seen:
    """What one server has seen of the reader's announcements: the last one's position
    and nonce."""

    def __init__(self):
        self.position = -1
        self.nonce = None

    def repeated(self, event_id):
        """Whether the event ``event_id`` repeats an announcement this server had."""
        found = _ID.fullmatch(event_id)
        if found is None:
            return False  # a writer's, or a batch inside a transaction
        position, nonce = int(found[1], 16), found[2]
        if position > self.position:
            self.position, self.nonce = position, nonce
            return False
        return position < self.position or nonce != self.nonce

    def forget(self):
        self.position, self.nonce = -1, None
