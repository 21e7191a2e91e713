"""Pigeon: a self-hostable WhatsApp-style messaging server."""

__version__ = "0.1.0"
