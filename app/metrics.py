"""Prometheus metrics, in a registry of the app's own so that several apps can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Histogram

from app.upstream.circuit import CircuitState


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "relay_polls",
            "Upstream polls, by the status seen or the kind of error.",
            ["outcome"],
            registry=self.registry,
        )
        self.poll_lateness = Histogram(
            "relay_poll_lateness_seconds",
            "How long after falling due a poll was sent: rate budget and scheduling waits.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.rate_limit_wait = Counter(
            "relay_upstream_rate_limit_wait_seconds",
            "Time polls waited for the per-key budget RELAY_UPSTREAM_RPS.",
            registry=self.registry,
        )
        self.circuit = Enum(
            "relay_upstream_circuit",
            "The upstream circuit: closed (polling), open (paused), half_open (probing).",
            states=[state.value for state in CircuitState],
            registry=self.registry,
        )
        self.expiries = Counter(
            "relay_watches_expired",
            "Watches ended with watch.expired, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relay_delivery_attempts",
            "Webhook delivery attempts, by outcome (delivered, retry, dead).",
            ["outcome"],
            registry=self.registry,
        )
        self.captures = Counter(
            "relay_captures",
            "Tries at capturing a succeeded task's result, by outcome (stored, retry, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.capture_seconds = Histogram(
            "relay_capture_duration_seconds",
            "Time to obtain and store one result, for the tries that stored it.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600),
            registry=self.registry,
        )
        self.capture_bytes = Counter(
            "relay_captured_bytes",
            "Bytes of results captured and stored.",
            registry=self.registry,
        )
        self.files_deleted = Counter(
            "relay_captured_files_deleted",
            "Captured files deleted once past RELAY_FILE_TTL.",
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "relay_delivery_duration_seconds",
            "Time from sending a webhook to the receiver's answer.",
            registry=self.registry,
        )
