"""One relay per SQLite file: a second one, in another process or the same, refuses to start
and says why, rather than running and stalling the first; PostgreSQL takes several."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from app.relay import running
from app.store.database import ping
from app.store.sqlite_guard import DatabaseInUseError
from tests.commands import command_environment, run_app_command
from tests.conftest import API_KEY, Upstream, relay_settings
from tests.processes import relay_process
from tests.servers import free_port

IN_USE = "is using the SQLite database"


async def test_a_second_relay_process_on_the_same_sqlite_file_refuses_to_start_and_says_why(
    upstream: Upstream, tmp_path: Path
) -> None:
    database = tmp_path / "relay.db"
    url = f"sqlite:///{database}"
    env = command_environment(RELAY_DATABASE_URL=url, RELAY_API_KEY=API_KEY)
    async with relay_process(url, upstream, tmp_path / "relay.log") as (http, first):
        served, said = await run_app_command(
            "serve", "--port", str(free_port()), env=env, cwd=tmp_path
        )
        under_uvicorn = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port()),
            env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        logged, _ = await asyncio.wait_for(under_uvicorn.communicate(), 60)
        still_served = await http.get("/v1/watches")

    assert served == 1
    assert said.startswith(f"error: another relay (process {first.pid}) {IN_USE} {database}")
    assert "Stop the other one first, or run several relays on PostgreSQL" in said
    assert under_uvicorn.returncode not in (0, None)
    assert f"another relay (process {first.pid}) {IN_USE} {database}" in logged.decode()
    assert still_served.status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_second_relay_in_the_same_process_on_a_sqlite_file_is_refused_until_the_first_stops(
    database_url: str, upstream: Upstream
) -> None:
    settings = relay_settings(database_url, upstream.url)
    async with running(settings):
        with pytest.raises(DatabaseInUseError, match=IN_USE):
            async with running(settings):
                pass

    async with running(settings) as after:
        await ping(after.db)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_relays_on_one_postgresql_database_run_side_by_side(
    database_url: str, upstream: Upstream
) -> None:
    settings = relay_settings(database_url, upstream.url)
    async with running(settings) as first, running(settings) as second:
        await ping(first.db)
        await ping(second.db)
