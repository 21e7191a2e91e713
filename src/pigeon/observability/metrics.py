"""Prometheus metrics, each app with its own registry (tests build many apps)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pigeon.domain.delivery import InboxEntry


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pigeon_http_requests",
            "HTTP requests handled, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pigeon_http_request_duration_seconds",
            "HTTP request latency, by route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.sms_sent = Counter(
            "pigeon_sms_sent",
            "SMS handed to the provider, by template (verification_code = OTPs sent).",
            ["template"],
            registry=self.registry,
        )
        self.active_devices = Gauge(
            "pigeon_active_devices",
            "Registered, unrevoked devices (read from the database at scrape time).",
            registry=self.registry,
        )

        self.commit_batch_size = Histogram(
            "pigeon_commit_batch_operations",
            "Operations (sends, acks, reads) per group commit.",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.commit_seconds = Histogram(
            "pigeon_commit_duration_seconds",
            "Time to apply and commit one batch.",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.websocket_connections = Gauge(
            "pigeon_websocket_connections",
            "Live WebSocket connections on this node.",
            registry=self.registry,
        )
        self.unreached = Counter(
            "pigeon_unreached_events",
            "Queued events published while their device had no live connection on any node.",
            registry=self.registry,
        )

    def record_commit(self, size: int, seconds: float) -> None:
        self.commit_batch_size.observe(size)
        self.commit_seconds.observe(seconds)

    def count_sms(self, template: str) -> None:
        self.sms_sent.labels(template=template).inc()


class UnreachedCounter:
    """``DeliveryFeedback`` that counts events queued for offline devices (until push
    notifications listen to it)."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.unreached

    def unreached(self, entries: Sequence[InboxEntry]) -> None:
        self._counter.inc(len(entries))


class PushCounters:
    """Push outcomes by provider (webpush, fcm, apns): sent, retried, failed (out of
    tries), dropped (refused for good) and removed (the token is gone)."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = Counter(
            "pigeon_push",
            "Push notifications by provider and outcome.",
            ["provider", "outcome"],
            registry=metrics.registry,
        )

    def __call__(self, provider: str, outcome: str) -> None:
        self._counter.labels(provider=provider, outcome=outcome).inc()
