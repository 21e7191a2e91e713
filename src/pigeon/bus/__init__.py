"""Bus adapters: how a node reaches connections, its own or other nodes'."""

# The remote buses' heartbeats: a node silent this long (seconds) is dead, and
# a live one beats this many times within it (PIGEON_BUS_NODE_TIMEOUT_SECONDS).
NODE_TIMEOUT = 10.0
BEATS_PER_TIMEOUT = 5
