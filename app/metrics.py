"""Prometheus metrics, in a registry of the app's own so that several apps can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "relay_polls",
            "Upstream polls, by the status seen or the kind of error.",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relay_delivery_attempts",
            "Webhook delivery attempts, by outcome (delivered, retry, dead).",
            ["outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "relay_delivery_duration_seconds",
            "Time from sending a webhook to the receiver's answer.",
            registry=self.registry,
        )
