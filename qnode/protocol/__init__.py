"""The qnode binary wire protocol, sans-IO (no sockets, no asyncio, no clock).

Modules: `framing` (length-prefixed msgpack frames, bounded decoder), `messages` (frame types and
their msgpack conversion), `connection` (the h11-style state machine), `ops` (op names and which
mutate), `payloads` (wire shapes of the queue API's values), `violations` (Local/Remote protocol
errors), `errors` (stable error codes). Spec: docs/protocol.md.
"""
