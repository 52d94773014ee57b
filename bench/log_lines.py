"""`python -m bench.log_lines`: what one log line costs the relay, in CPU time.

Renders the relay's busiest line (`delivery succeeded`, six fields) the way the relay does,
through the standard library and `app.logs`' formatter, into /dev/null: as JSON, as text, and
below the level (a per-poll line at the default level). Configured secrets are set, so the
redaction searches for them as it does in production. Prints microseconds per line, the best of
several rounds (CPU time of this process, so other load on the machine matters little).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from app import logs
from app.settings import Settings

FIELDS = {
    "event_id": "msg_5c0d6d0b8a2f4e3b9a1c7d2e4f6a8b0c",
    "event_type": "task.succeeded",
    "watch_id": "wat_01a2235e6b3a2694b3cc524cbf8e",
    "client_id": "cli_01a2235e6b3a2694b3cc524cbf8e",
    "attempt": 1,
    "status_code": 204,
    "duration_ms": 3,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_lines", description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    settings = Settings(
        _env_file=None,
        api_key="rk_" + "k" * 43,
        signing_secret="whsec_" + "c2VjcmV0" * 6,
        admin_token="t" * 43,
        nebula_api_key="sk-" + "u" * 48,
        encryption_key="u8XnC3b7mGq0y5v1Fh2Jk4Lp6Rs9Tw0Zx3Ad5Ce7Gi8=",
    )
    logs.lean_records()
    with open(os.devnull, "w") as sink:
        for form in ("json", "text"):
            log = _logger(settings.model_copy(update={"log_format": form}), sink)
            cost = _best(functools.partial(log.info, "delivery succeeded", extra=FIELDS), args)
            print(f"{form:>4}: {cost:5.1f} us a line")
        cost = _best(functools.partial(log.debug, "task polled", extra=FIELDS), args)
        print(f"below the level: {cost:5.2f} us a line")


def _logger(settings: Settings, sink: TextIO) -> logging.Logger:
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logs.make_formatter(settings, terminal=False))
    log = logging.getLogger(f"bench.log_lines.{settings.log_format}")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def _best(write: Callable[[], None], args: argparse.Namespace) -> float:
    lines: int = args.lines
    rounds: list[float] = []
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(lines):
            write()
        rounds.append((time.process_time() - started) / lines * 1e6)
    return min(rounds)


if __name__ == "__main__":
    main()
