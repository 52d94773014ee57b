"""Client apps in the store: keys resolve to their app until rotated or revoked, at once and for
every replica; secrets are kept encrypted, and a rotated one signs on for its overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from app.delivery.signing import generate_secret
from app.encryption import KeyBox, UndecryptableError
from app.store import client_apps, outbox
from app.store.client_apps import (
    ClientApps,
    ClientNotFoundError,
    ClientRevokedError,
    InvalidNameError,
    NameTakenError,
    bootstrap_default_client,
    encrypt_secrets_in_clear,
)
from app.store.database import Database
from app.store.tables import clients
from tests.conftest import ENCRYPTION_KEY

KEY_BOX = KeyBox.from_config(ENCRYPTION_KEY)
DAY = 24 * 3600.0


def apps_of(db: Database, overlap: float = DAY) -> ClientApps:
    """What one replica holds: two of them on one database stand for two replicas."""
    return ClientApps(db, key_box=KEY_BOX, secret_overlap=overlap)


async def stored_row(db: Database, client_id: str) -> dict[str, object]:
    row = await db.run(
        lambda conn: conn.execute(select(clients).where(clients.c.id == client_id)).one()
    )
    return dict(row._mapping)


async def test_a_key_resolves_to_its_client_and_a_wrong_one_to_nothing(db: Database) -> None:
    boot = await bootstrap_default_client(db, api_key="key-a", signing_secret=None, key_box=KEY_BOX)
    apps = apps_of(db)

    assert await apps.authenticate("key-a") == boot.client
    assert await apps.authenticate("key-b") is None


async def test_a_key_replaced_by_configuration_stops_working_at_once(db: Database) -> None:
    apps = apps_of(db)
    await bootstrap_default_client(db, api_key="key-a", signing_secret=None, key_box=KEY_BOX)
    assert await apps.authenticate("key-a") is not None

    await bootstrap_default_client(db, api_key="key-b", signing_secret=None, key_box=KEY_BOX)

    assert await apps.authenticate("key-a") is None
    assert await apps.authenticate("key-b") is not None


async def test_a_rotated_key_is_refused_by_every_replica_from_the_next_request(
    db: Database,
) -> None:
    one, other = apps_of(db), apps_of(db)
    made = await one.create("shop")
    assert made.api_key is not None
    assert await other.authenticate(made.api_key) is not None

    rotated = await one.rotate_key(made.client.id)

    assert rotated.api_key is not None and rotated.api_key != made.api_key
    assert await other.authenticate(made.api_key) is None
    assert await other.authenticate(rotated.api_key) == await one.authenticate(rotated.api_key)


async def test_a_revoked_app_is_refused_by_every_replica_and_gets_no_new_credentials(
    db: Database,
) -> None:
    one, other = apps_of(db), apps_of(db)
    made = await one.create("shop")
    assert made.api_key is not None
    assert await other.authenticate(made.api_key) is not None

    revoked = await one.revoke(made.client.id)

    assert revoked.revoked_at is not None
    assert await other.authenticate(made.api_key) is None
    assert (await one.revoke(made.client.id)).revoked_at == revoked.revoked_at
    with pytest.raises(ClientRevokedError):
        await one.rotate_key(made.client.id)
    with pytest.raises(ClientRevokedError):
        await one.rotate_secret(made.client.id)


async def test_unknown_apps_are_not_found(db: Database) -> None:
    apps = apps_of(db)
    for change in (apps.get, apps.rotate_key, apps.rotate_secret, apps.revoke):
        with pytest.raises(ClientNotFoundError):
            await change("cli_unknown")


async def test_names_are_unique_and_one_printable_line(db: Database) -> None:
    apps = apps_of(db)
    await apps.create("shop")

    with pytest.raises(NameTakenError):
        await apps.create(" shop ")
    for bad in ("", "   ", "x" * 101, "two\nlines", "bell\x07", "zero\u200bwidth"):
        with pytest.raises(InvalidNameError):
            await apps.create(bad)
    assert [app.name for app in await apps.all()] == ["shop"]


async def test_keys_are_stored_as_digests_and_secrets_encrypted(db: Database) -> None:
    made = await apps_of(db).create("shop")
    assert made.api_key is not None and made.signing_secret is not None

    row = await stored_row(db, made.client.id)

    assert made.api_key not in str(row) and made.signing_secret not in str(row)
    assert KEY_BOX.decrypt(str(row["signing_secret"])) == made.signing_secret
    assert await apps_of(db).signing_secret(made.client.id) == made.signing_secret


async def test_a_rotated_secret_signs_beside_the_new_one_until_its_overlap_ends(
    db: Database,
) -> None:
    apps = apps_of(db, overlap=3600)
    made = await apps.create("shop")

    rotated = await apps.rotate_secret(made.client.id)

    until = rotated.client.previous_secret_until
    assert until is not None
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    row = await stored_row(db, made.client.id)
    assert await apps.signing_secret(made.client.id) == rotated.signing_secret
    assert KEY_BOX.decrypt(str(row["previous_signing_secret"])) == made.signing_secret


async def test_without_an_overlap_a_rotated_secret_stops_signing_at_once(db: Database) -> None:
    apps = apps_of(db, overlap=0)
    made = await apps.create("shop")

    rotated = await apps.rotate_secret(made.client.id)

    assert rotated.client.previous_secret_until is None
    assert (await stored_row(db, made.client.id))["previous_signing_secret"] is None


async def test_secrets_found_in_clear_are_encrypted_once(db: Database) -> None:
    made = await apps_of(db).create("shop")
    in_clear = generate_secret()
    await db.run(
        lambda conn: conn.execute(
            update(clients).where(clients.c.id == made.client.id).values(signing_secret=in_clear)
        )
    )

    assert await encrypt_secrets_in_clear(db, key_box=KEY_BOX) == 1
    assert await encrypt_secrets_in_clear(db, key_box=KEY_BOX) == 0
    assert in_clear not in str(await stored_row(db, made.client.id))
    assert await apps_of(db).signing_secret(made.client.id) == in_clear


async def test_a_secret_replaced_by_configuration_signs_on_for_the_overlap(db: Database) -> None:
    first, second = generate_secret(), generate_secret()
    boot = await bootstrap_default_client(
        db, api_key="key-a", signing_secret=first, key_box=KEY_BOX, secret_overlap=DAY
    )
    again = await bootstrap_default_client(
        db, api_key="key-a", signing_secret=first, key_box=KEY_BOX, secret_overlap=DAY
    )
    assert (await stored_row(db, boot.client.id))["previous_signing_secret"] is None

    await bootstrap_default_client(
        db, api_key="key-a", signing_secret=second, key_box=KEY_BOX, secret_overlap=DAY
    )

    assert again.client == boot.client
    assert await apps_of(db).signing_secret(boot.client.id) == second
    row = await stored_row(db, boot.client.id)
    assert KEY_BOX.decrypt(str(row["previous_signing_secret"])) == first


async def test_a_secret_encrypted_with_a_key_no_longer_held_cannot_be_read(db: Database) -> None:
    made = await apps_of(db).create("shop")
    elsewhere = KeyBox.from_config(Fernet.generate_key().decode())

    with pytest.raises(UndecryptableError, match="signing secret"):
        await ClientApps(db, key_box=elsewhere, secret_overlap=0).signing_secret(made.client.id)


async def test_deliveries_are_signed_with_the_previous_secret_only_while_it_overlaps(
    db: Database,
) -> None:
    apps = apps_of(db, overlap=3600)
    made = await apps.create("shop")
    rotated = await apps.rotate_secret(made.client.id)
    [signer] = await db.run(
        lambda conn: conn.execute(outbox._SIGNERS, {"ids": [made.client.id]}).all()
    )

    def signing_at(now: datetime) -> list[str]:
        return [KEY_BOX.decrypt(secret) for secret in client_apps.signing_secrets(signer, now)]

    now = datetime.now(UTC)
    assert signing_at(now) == [rotated.signing_secret, made.signing_secret]
    assert signing_at(now + timedelta(hours=2)) == [rotated.signing_secret]
