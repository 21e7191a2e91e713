"""Plain data types and rules. Nothing here does I/O or imports the rest of Pigeon."""
