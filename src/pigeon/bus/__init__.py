"""Bus adapters: how a node reaches connections, its own or (later) other nodes'."""
