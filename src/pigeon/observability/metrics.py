"""Prometheus metrics, each app with its own registry (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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

    def count_sms(self, template: str) -> None:
        self.sms_sent.labels(template=template).inc()
