"""The command line, `video-webhook-relay` (or `python -m app`): one module per group of
commands, each adding its own to the parser."""

from __future__ import annotations

import argparse
import sys

from app.cli import clients, devkit, service, watch


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    status: int = args.run(args)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # Run as `python -m app`, argv[0] is the path of __main__.py.
        prog="python -m app" if sys.argv[0].endswith("__main__.py") else None,
        description="The video webhook relay: run it, keep its database, register watches, "
        "manage client apps, and try it with a simulated upstream.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    service.add_commands(commands)
    watch.add_commands(commands)
    clients.add_commands(commands)
    devkit.add_commands(commands)
    return parser
