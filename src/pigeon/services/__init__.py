"""Use cases. Services talk to the outside world only through the ports in ``ports``."""
