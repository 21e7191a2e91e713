"""Password-style hashing for two-step PINs."""
