"""The sans-I/O core of DDP: messages, EJSON, ids, the connection state machine, the merge box.

Nothing here touches a socket, a clock, a thread or Django, so it runs (and is
tested) anywhere. The transport feeds :class:`ServerConnection` the text it
receives and sends the text of the messages it gets back; the session executes
the requests and keeps a :class:`MergeBox` per connection.
"""

from ddp.protocol.connection import (
    CLOSE,
    SUPPORTED_VERSIONS,
    ConnectionState,
    Resume,
    ServerConnection,
)
from ddp.protocol.ejson import (
    EJSONError,
    ObjectId,
    Regexp,
    dumps,
    from_ejson,
    loads,
    to_ejson,
)
from ddp.protocol.errors import MeteorError, ProtocolError, sanitize
from ddp.protocol.ids import parse_id, random_id, stringify_id
from ddp.protocol.mergebox import (
    NO_MERGE,
    NO_MERGE_MULTI,
    PUBLICATION_STRATEGIES,
    SERVER_MERGE,
    USERS,
    MergeBox,
    SubscriptionOwner,
)
from ddp.protocol.messages import (
    MISSING,
    Added,
    Changed,
    Connect,
    Connected,
    Disconnect,
    Error,
    Failed,
    Method,
    NoSub,
    Ping,
    Pong,
    Ready,
    Removed,
    Result,
    Sub,
    Unsub,
    Updated,
    encode,
)

__all__ = [
    "Added",
    "CLOSE",
    "Changed",
    "Connect",
    "Connected",
    "ConnectionState",
    "Disconnect",
    "EJSONError",
    "Error",
    "Failed",
    "MISSING",
    "MergeBox",
    "MeteorError",
    "Method",
    "NO_MERGE",
    "NO_MERGE_MULTI",
    "NoSub",
    "ObjectId",
    "PUBLICATION_STRATEGIES",
    "Ping",
    "Pong",
    "ProtocolError",
    "Ready",
    "Regexp",
    "Removed",
    "Result",
    "Resume",
    "SERVER_MERGE",
    "SUPPORTED_VERSIONS",
    "ServerConnection",
    "Sub",
    "SubscriptionOwner",
    "USERS",
    "Unsub",
    "Updated",
    "dumps",
    "encode",
    "from_ejson",
    "loads",
    "parse_id",
    "random_id",
    "sanitize",
    "stringify_id",
    "to_ejson",
]
