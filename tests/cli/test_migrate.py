"""`migrate` brings a database's schema up to date and exits; `migrate --check` changes nothing
and exits non-zero, saying so, while the schema is behind."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from app.store.database import alembic_config, open_database
from tests.commands import command_environment, run_app_command


async def migrate(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = command_environment(RELAY_DATABASE_URL=database_url)
    return await run_app_command("migrate", *args, env=env, cwd=tmp_path)


def latest_revision() -> str:
    latest = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert latest is not None
    return latest


async def test_a_fresh_database_is_behind_until_migrated(database_url: str, tmp_path: Path) -> None:
    latest = latest_revision()

    before = await migrate(database_url, tmp_path, "--check")
    migrated = await migrate(database_url, tmp_path)
    after = await migrate(database_url, tmp_path, "--check")
    again = await migrate(database_url, tmp_path)

    assert before[0] == 1
    assert before[1].startswith("error: ")
    assert re.search(r"no database at .*relay\.db yet|has no schema yet", before[1])
    assert migrated == (0, f"migrated {database_url} from nothing to revision {latest}\n")
    assert after == (0, f"the schema of {database_url} is up to date (revision {latest})\n")
    assert again == (
        0,
        f"the schema of {database_url} was already up to date (revision {latest})\n",
    )


async def test_a_database_of_an_earlier_version_is_behind_until_migrated(
    database_url: str, tmp_path: Path
) -> None:
    db = open_database(database_url)
    try:
        await db.run(lambda connection: command.upgrade(alembic_config(connection), "0001"))
    finally:
        await db.dispose()
    latest = latest_revision()

    checked = await migrate(database_url, tmp_path, "--check")
    migrated = await migrate(database_url, tmp_path)
    rechecked = await migrate(database_url, tmp_path, "--check")

    assert checked == (
        1,
        f"error: the schema of {database_url} is behind: at revision 0001, this version needs "
        f"{latest}; run `migrate`\n",
    )
    assert migrated == (0, f"migrated {database_url} from revision 0001 to revision {latest}\n")
    assert rechecked[0] == 0


async def test_migrate_says_so_when_it_cannot_reach_the_database(tmp_path: Path) -> None:
    unreachable = "postgresql://relay:secret@127.0.0.1:1/relay"

    status, output = await migrate(unreachable, tmp_path, "--check")

    assert status == 1
    assert output.startswith(
        "error: cannot use the database postgresql://relay:***@127.0.0.1:1/relay"
    )
    assert "secret" not in output


async def test_replicas_started_together_on_a_new_database_migrate_it_once(
    database_url: str, tmp_path: Path
) -> None:
    """Replicas deployed at once each migrate at their start: on PostgreSQL they take turns, and
    those after the first find the schema current."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is one relay per file: there are no replicas to start together")
    results = await asyncio.gather(*(migrate(database_url, tmp_path) for _ in range(4)))

    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert await migrate(database_url, tmp_path, "--check") == (
        0,
        f"the schema of {database_url} is up to date (revision {latest_revision()})\n",
    )
