"""The upstream video-generation API: what it answers, and how we ask it."""

from app.upstream.client import TaskSource, UpstreamClient, UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import TaskSnapshot, TaskStatus, parse_snapshot

__all__ = [
    "TaskSnapshot",
    "TaskSource",
    "TaskStatus",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamErrorKind",
    "parse_snapshot",
]
