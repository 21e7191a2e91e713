"""Push services: Web Push (RFC 8030/8291/8292), FCM HTTP v1 and APNs, behind ``PushSender``."""
