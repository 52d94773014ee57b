"""The upstream video-generation API: what it answers, and how we ask it."""

from app.upstream.client import UpstreamClient, UpstreamError, UpstreamErrorKind
from app.upstream.snapshot import TaskSnapshot, TaskStatus, parse_snapshot

__all__ = [
    "TaskSnapshot",
    "TaskStatus",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamErrorKind",
    "parse_snapshot",
]
