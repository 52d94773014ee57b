"""Command line: `python -m app openapi` prints the API's OpenAPI document."""

from __future__ import annotations

import argparse
import json
import sys

from app.main import create_app
from app.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("openapi", help="print the OpenAPI document (JSON) to standard output")
    parser.parse_args(argv)
    spec = create_app(Settings(_env_file=None)).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
