"""What the commands share: the relay they talk to, its API key, and how a failure is told."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

from app.settings import Settings

DEFAULT_RELAY_URL = "http://127.0.0.1:8000"

#: What each command module adds its commands to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    """`--api-key`, else RELAY_API_KEY: the key a relay started in the same shell was given."""
    given: str | None = args.api_key
    if given is None and settings.api_key is not None:
        given = settings.api_key.get_secret_value()
    return given


def fail(message: str) -> int:
    """Print `message` as an error and give the exit status of a command that failed."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1
