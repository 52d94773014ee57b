"""Every command says what it does with --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands import command_environment, run_app_command

COMMANDS = {
    "serve": "Run the relay",
    "migrate": "Apply the migrations",
    "openapi": "Print the relay's OpenAPI document",
    "watch": "Register a watch of an upstream task",
    "clients": "Works on the database RELAY_DATABASE_URL names",
    "simulator": "Serve the simulated upstream on its own",
    "listen": "Receive webhooks on any path",
    "trigger": "Submit a simulated task",
}


async def test_the_command_line_lists_every_command(tmp_path: Path) -> None:
    status, output = await run_app_command("--help", env=command_environment(), cwd=tmp_path)

    assert status == 0
    assert output.startswith("usage: python -m app")
    listed = output.split("positional arguments:")[1]
    assert all(
        f"\n    {command} " in listed or f"\n    {command}\n" in listed for command in COMMANDS
    )


@pytest.mark.parametrize(("command", "says"), COMMANDS.items(), ids=list(COMMANDS))
async def test_each_command_says_what_it_does(command: str, says: str, tmp_path: Path) -> None:
    status, output = await run_app_command(
        command, "--help", env=command_environment(), cwd=tmp_path
    )

    assert status == 0
    assert output.startswith(f"usage: python -m app {command}")
    assert says in " ".join(output.split())
