"""The WebSocket gateway: frames in, service calls, frames and events out."""
