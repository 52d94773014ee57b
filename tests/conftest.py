"""The relay under test runs for real: its own uvicorn server, a SQLite file, the simulated
upstream and a webhook receiver, all on loopback."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.devkit.simulator import create_simulator
from app.main import create_app
from app.settings import Settings
from tests.flaky_upstream import FlakyUpstream
from tests.receiver import Receiver
from tests.servers import serve

#: A PostgreSQL server with a database the tests may create databases from (trust auth).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
API_KEY = "test-api-key"
UPSTREAM_KEY = "sk-test"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENCRYPTION_KEY = "u8XnC3b7mGq0y5v1Fh2Jk4Lp6Rs9Tw0Zx3Ad5Ce7Gi8="


class Upstream:
    """The simulated upstream, with a helper to submit tasks as an app would."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def submit(
        self, model: str = "wan2.5-t2v-preview", api_key: str = UPSTREAM_KEY, **simulation: Any
    ) -> str:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(
                "/v1/video/generations",
                json={"model": model, "prompt": "a cat", "simulation": simulation},
                headers={"Authorization": f"Bearer {api_key}"},
            )
        response.raise_for_status()
        task_id: str = response.json()["task_id"]
        return task_id


class RelayClient:
    """An app using the relay's API."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    async def register(self, task_id: str, callback_url: str, **extra: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/watches", json={"task_id": task_id, "callback_url": callback_url, **extra}
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def metrics(self) -> str:
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    async def watch_to_the_end(
        self, upstream: Upstream, callback_url: str, state: str = "completed"
    ) -> dict[str, Any]:
        """Watch a task that ends at its first poll, until the watch is in `state`."""
        watch = await self.register(await upstream.submit(polls=1), callback_url)
        return await self.wait_for_state(watch["id"], state)

    async def attempts(self, watch_id: str) -> list[dict[str, Any]]:
        """The watch's delivery attempts, oldest first."""
        response = await self.http.get(f"/v1/watches/{watch_id}/attempts")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["data"]
        return found

    async def get(self, watch_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/watches/{watch_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for_state(
        self, watch_id: str, state: str, within: float = 10.0
    ) -> dict[str, Any]:
        """Poll the watch as a client would, until it reaches `state`."""
        async with asyncio.timeout(within):
            while (watch := await self.get(watch_id))["state"] != state:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return watch


RelayFactory = Callable[..., AbstractAsyncContextManager[RelayClient]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with serve(create_simulator()) as url:
        yield Upstream(url)


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyUpstream]:
    """An upstream that answers as scripted; pass `nebula_base_url=flaky.url` to `start_relay`."""
    fake = FlakyUpstream()
    async with serve(fake.app) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.released.set()  # let hanging requests end so the server stops at once


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    async with serve(hooks.app) as url:
        yield hooks, f"{url}/hooks"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every relay test runs on a fresh SQLite file and on a fresh PostgreSQL database.

    Without a PostgreSQL server the PostgreSQL half is skipped, except in CI, where it fails.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    admin = make_url(POSTGRES_URL)
    name = f"relay_test_{secrets.token_hex(6)}"
    try:
        connection = await asyncpg.connect(
            host=admin.host, port=admin.port, user=admin.username, database=admin.database
        )
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({exc}); set TEST_POSTGRES_URL")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield admin.set(database=name).render_as_string(hide_password=False)
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def relay_settings(database_url: str, upstream_url: str, **overrides: Any) -> Settings:
    """Settings for a fast-moving relay: polls and retries every fraction of a second."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "nebula_base_url": upstream_url,
        "nebula_api_key": UPSTREAM_KEY,
        "api_key": API_KEY,
        "signing_secret": SIGNING_SECRET,
        "poll_interval": 0.1,
        "tick_interval": 0.05,
        "retry_schedule": (0.1, 0.1, 0.1),
        "retry_jitter": 0,
        "delivery_timeout": 2,
        "upstream_timeout": 2,
        "allow_private_callbacks": True,
        "shutdown_grace": 2,
        # Tests that start no relay of their own keep captured files apart from the project's.
        "storage_dir": str(Path(tempfile.gettempdir()) / "relay-test-files"),
        # Captures in the relay's own process: a worker process would cost every test that
        # starts a relay a fraction of a second. The capture tests ask for one (their `storage`).
        "capture_process": False,
    }
    if make_url(database_url).get_backend_name() != "sqlite":
        # A SQLite relay keeps a key of its own beside its file; PostgreSQL needs one configured.
        values["encryption_key"] = ENCRYPTION_KEY
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def start_relay(database_url: str, upstream: Upstream, tmp_path: Path) -> RelayFactory:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RelayClient]:
        overrides.setdefault("storage_dir", str(tmp_path / "files"))
        settings = relay_settings(database_url, upstream.url, **overrides)
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
        ):
            yield RelayClient(http, settings)

    return start


@pytest.fixture
async def relay(start_relay: RelayFactory) -> AsyncIterator[RelayClient]:
    async with start_relay() as client:
        yield client
