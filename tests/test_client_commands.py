"""`python -m app clients`: the operator manages client apps from the command line, on the
database a running relay uses, and the relay honours each change from its next request."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.commands import command_environment, run_app_command
from tests.conftest import ENCRYPTION_KEY, RelayFactory


def environment(database_url: str) -> dict[str, str]:
    """The relay's database; with PostgreSQL, the relay's key too (SQLite's is beside its file)."""
    values = {"RELAY_DATABASE_URL": database_url}
    if make_url(database_url).get_backend_name() != "sqlite":
        values["RELAY_ENCRYPTION_KEY"] = ENCRYPTION_KEY
    return command_environment(**values)


def printed(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    assert match, output
    return match.group(1)


#: Each command is a new interpreter, seconds on a slow machine: more time than the default.
@pytest.mark.timeout(180)
async def test_apps_made_and_changed_from_the_command_line_are_honoured_by_the_relay(
    start_relay: RelayFactory, database_url: str, tmp_path: Path
) -> None:
    env = environment(database_url)

    async def clients(*args: str) -> tuple[int, str]:
        return await run_app_command("clients", *args, env=env, cwd=tmp_path)

    status, created = await clients("create", "--name", "shop")
    assert status == 0, created
    client_id = printed(r"client app (cli_\w+) \(shop\) created", created)
    api_key = printed(r"api key: +(rk_\S+)", created)
    secret = printed(r"signing secret: +(whsec_\S+)", created)

    async with start_relay() as relay, httpx.AsyncClient(base_url=relay.http.base_url) as http:

        async def as_app(key: str) -> httpx.Response:
            return await http.get("/v1/client", headers={"Authorization": f"Bearer {key}"})

        first = await as_app(api_key)
        status, listed = await clients("list")
        assert status == 0, listed
        status, rotated = await clients("rotate-key", client_id)
        assert status == 0, rotated
        new_key = printed(r"\n +(rk_\S+)", rotated)
        after_rotation = [(await as_app(key)).status_code for key in (api_key, new_key)]
        status, new_secret_output = await clients("rotate-secret", client_id)
        assert status == 0, new_secret_output
        new_secret = printed(r"\n +(whsec_\S+)", new_secret_output)
        after_secret = await as_app(new_key)
        status, revoked = await clients("revoke", client_id)
        assert status == 0, revoked
        after_revocation = await as_app(new_key)
        status, listed_after = await clients("list")

    assert first.status_code == 200
    assert first.json() == {
        "id": client_id,
        "name": "shop",
        "signing_secret": secret,
        "previous_secret_until": None,
    }
    assert re.search(rf"{client_id} .* active +shop", listed)
    assert api_key not in listed and secret not in listed
    assert after_rotation == [401, 200]
    assert "previous one until" in new_secret_output
    assert after_secret.json()["signing_secret"] == new_secret
    assert after_secret.json()["previous_secret_until"] is not None
    assert after_revocation.status_code == 401
    assert re.search(rf"{client_id} .* revoked .* shop", listed_after)


@pytest.mark.timeout(180)
async def test_the_commands_say_what_went_wrong(database_url: str, tmp_path: Path) -> None:
    env = environment(database_url)

    async def clients(*args: str) -> tuple[int, str]:
        return await run_app_command("clients", *args, env=env, cwd=tmp_path)

    await clients("create", "--name", "shop")
    client_id = printed(r"(cli_\w+)", (await clients("list"))[1])
    await clients("revoke", client_id)

    assert await clients("create", "--name", "shop") == (
        1,
        "error: a client app named 'shop' already exists\n",
    )
    assert await clients("rotate-key", "cli_nope") == (1, "error: no client app with id cli_nope\n")
    assert await clients("rotate-secret", client_id) == (
        1,
        f"error: client app {client_id} was revoked\n",
    )
    status, output = await clients("create", "--name", " ")
    assert (status, output) == (1, "error: a name must have 1 to 100 characters\n")
