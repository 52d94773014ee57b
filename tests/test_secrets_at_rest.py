"""Secrets at rest and in logs: API keys kept as digests, signing secrets and upstream keys
encrypted with a key that is never in the database, and none of them ever in a log line."""

from __future__ import annotations

import logging
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import Connection, insert, select
from sqlalchemy.engine import make_url
from standardwebhooks import Webhook

from app.delivery.signing import generate_secret
from app.encryption import KeyBox, KeyMissingError, key_box_for
from app.ids import new_id
from app.main import create_app
from app.relay import running
from app.store.client_apps import hash_api_key
from app.store.database import alembic_config, open_database
from app.store.tables import clients, metadata
from tests.commands import command_environment, run_app_command
from tests.conftest import API_KEY, SIGNING_SECRET, RelayFactory, Upstream, relay_settings
from tests.receiver import Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]
ADMIN_TOKEN = "admin-" + secrets.token_hex(16)


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    return Path(url.database or "") if url.get_backend_name() == "sqlite" else None


async def everything_stored(database_url: str) -> bytes:
    """What an attacker with a copy of the database would read: the file and its write-ahead
    log as bytes for SQLite; every row of every table, as text, for PostgreSQL."""
    path = sqlite_path(database_url)
    if path is not None:
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    def dump(conn: Connection) -> bytes:
        rows = [
            str(row).encode()
            for table in metadata.sorted_tables
            for row in conn.execute(select(table))
        ]
        return b"\n".join(rows)

    db = open_database(database_url)
    try:
        return await db.run(dump)
    finally:
        await db.dispose()


async def test_no_key_secret_or_token_is_ever_stored_or_logged_in_clear(
    start_relay: RelayFactory,
    upstream: Upstream,
    receiver: Hooks,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A whole scenario, every logger at DEBUG (SQLAlchemy's statements and their parameters
    included): register with an upstream key, deliver, rotate the key and the secret, deliver
    again; then every secret used is looked for in the database and in the logs."""
    hooks, callback = receiver
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # which SQLAlchemy keeps at WARNING
    relay_upstream_key = "sk-relay-" + secrets.token_hex(12)
    app_upstream_key = "sk-app-" + secrets.token_hex(12)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    used = [API_KEY, SIGNING_SECRET, ADMIN_TOKEN, relay_upstream_key, app_upstream_key]
    async with start_relay(
        admin_token=ADMIN_TOKEN, nebula_api_key=relay_upstream_key, secret_overlap=60
    ) as relay:
        made = (
            await relay.http.post("/v1/admin/clients", json={"name": "shop"}, headers=admin)
        ).json()
        used += [made["api_key"], made["signing_secret"]]
        shop = {"Authorization": f"Bearer {made['api_key']}"}
        first = await relay.http.post(
            "/v1/watches",
            json={
                "task_id": await upstream.submit(api_key=app_upstream_key, polls=1),
                "callback_url": callback,
                "upstream_api_key": app_upstream_key,
            },
            headers=shop,
        )
        await relay.register(await upstream.submit(api_key=relay_upstream_key, polls=1), callback)
        await hooks.wait_for(2)
        key = await relay.http.post(
            f"/v1/admin/clients/{made['client']['id']}/rotate-key", headers=admin
        )
        secret = await relay.http.post(
            f"/v1/admin/clients/{made['client']['id']}/rotate-secret", headers=admin
        )
        used += [key.json()["api_key"], secret.json()["signing_secret"]]
        shop = {"Authorization": f"Bearer {key.json()['api_key']}"}
        await relay.http.post(
            "/v1/watches",
            json={
                "task_id": await upstream.submit(api_key=app_upstream_key, polls=1),
                "callback_url": callback,
                "upstream_api_key": app_upstream_key,
            },
            headers=shop,
        )
        [*_, last] = await hooks.wait_for(3)
        while_running = await everything_stored(database_url)
    after_stop = await everything_stored(database_url)

    assert first.status_code == 201
    assert Webhook(secret.json()["signing_secret"]).verify(last.body, last.headers)
    assert Webhook(made["signing_secret"]).verify(last.body, last.headers)
    assert any(record.name.startswith("sqlalchemy") for record in caplog.records)
    logged = caplog.text
    for value in used:
        for form in {value, value.removeprefix("whsec_")}:
            assert form.encode() not in while_running, value
            assert form.encode() not in after_stop, value
            assert form not in logged, value
    assert hash_api_key(key.json()["api_key"]).encode() in after_stop, "keys are kept as digests"


async def test_a_sqlite_relay_keeps_a_key_of_its_own_beside_its_database(
    upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "relay.db"
    settings = relay_settings(
        f"sqlite:///{database}", upstream.url, admin_token=ADMIN_TOKEN, encryption_key=None
    )
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    caplog.set_level(logging.WARNING, logger="app.encryption")
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        made = (await http.post("/v1/admin/clients", json={"name": "shop"}, headers=admin)).json()
        upstream_key = await http.post(
            "/v1/watches",
            json={
                "task_id": "video_1",
                "callback_url": "http://127.0.0.1/h",
                "upstream_api_key": "k",
            },
            headers={"Authorization": f"Bearer {made['api_key']}"},
        )
    key_file = tmp_path / "relay.db.key"
    [announcement] = [r.getMessage() for r in caplog.records if r.name == "app.encryption"]
    kept = key_file.read_text()
    caplog.clear()

    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        again = await http.get("/v1/client", headers={"Authorization": f"Bearer {made['api_key']}"})

    assert upstream_key.status_code == 201, "with a key of its own, upstream keys are taken"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in announcement and "RELAY_ENCRYPTION_KEY is not set" in announcement
    KeyBox.from_config(kept)
    assert key_file.read_text() == kept, "made once, then kept"
    assert not [r for r in caplog.records if r.name == "app.encryption"]
    assert again.json()["signing_secret"] == made["signing_secret"]


async def test_without_an_encryption_key_a_postgresql_relay_refuses_to_start(
    upstream: Upstream, tmp_path: Path
) -> None:
    settings = relay_settings(
        "postgresql://relay@127.0.0.1:1/relay", upstream.url, encryption_key=None
    )

    with pytest.raises(KeyMissingError, match="RELAY_ENCRYPTION_KEY must be set"):
        async with running(settings):
            pass
    status, output = await run_app_command(
        "clients",
        "list",
        env=command_environment(RELAY_DATABASE_URL="postgresql://relay@127.0.0.1:1/relay"),
        cwd=tmp_path,
    )
    assert status == 1
    assert output.startswith("error: RELAY_ENCRYPTION_KEY must be set")
    assert "every replica needs the same key" in output


async def test_signing_secrets_stored_in_clear_before_are_encrypted_at_the_first_start(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks, database_url: str
) -> None:
    """Databases from before this version hold signing secrets in clear; the migration cannot
    encrypt them (the key is not in the database), the first start does."""
    hooks, callback = receiver
    in_clear = generate_secret()
    old_id = new_id("cli")

    def at_revision_0005(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), "0005")
        conn.execute(
            insert(clients).values(
                id=old_id,
                name="default",
                api_key_hash=hash_api_key(API_KEY),
                signing_secret=in_clear,
                created_at=datetime.now(UTC),
            )
        )

    db = open_database(database_url)
    try:
        await db.run(at_revision_0005)
    finally:
        await db.dispose()

    async with start_relay(signing_secret=None) as client:
        shown = (await client.http.get("/v1/client")).json()
        await client.register(await upstream.submit(polls=1), callback)
        [hook] = await hooks.wait_for(1)
        stored = await everything_stored(database_url)

    assert shown["id"] == old_id and shown["signing_secret"] == in_clear
    assert Webhook(in_clear).verify(hook.body, hook.headers)
    assert in_clear.removeprefix("whsec_").encode() not in stored


def test_a_key_file_that_is_not_a_key_stops_the_start_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "relay.db.key").write_text("not a key")

    with pytest.raises(ValueError, match=r"relay\.db\.key must hold comma-separated Fernet keys"):
        key_box_for(None, f"sqlite:///{tmp_path / 'relay.db'}")


def test_a_configured_key_wins_over_a_key_file(tmp_path: Path) -> None:
    configured = Fernet.generate_key().decode()
    box = key_box_for(configured, f"sqlite:///{tmp_path / 'relay.db'}")

    assert KeyBox.from_config(configured).decrypt(box.encrypt("x")) == "x"
    assert not (tmp_path / "relay.db.key").exists()


async def test_a_relay_without_the_key_its_secrets_were_stored_with_answers_503_and_says_why(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    """Not the caller's doing, and not a crash: the answer names the setting to restore."""
    _, callback = receiver
    async with start_relay(encryption_key=Fernet.generate_key().decode()):
        pass  # the database and the default app, their secret stored under this key
    async with start_relay(
        encryption_key=Fernet.generate_key().decode(), signing_secret=None
    ) as relay:
        client = await relay.http.get("/v1/client")
        task_id = await upstream.submit(polls=1)
        verified = await relay.http.post(
            "/v1/watches",
            json={"task_id": task_id, "callback_url": callback, "verify_callback": True},
        )

    for answer in (client, verified):
        assert answer.status_code == 503
        assert "RELAY_ENCRYPTION_KEY" in answer.json()["detail"]
